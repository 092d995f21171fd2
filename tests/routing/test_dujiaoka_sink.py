"""The dujiaoka SQL sink against a real MariaDB: dujiaoka's own ``orders`` and ``pays`` tables (tests/data), rows
written as dujiaoka writes them, the daemon's cycle on a fixed clock, the real store and console."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from monitor.clock import FixedClock
from monitor.sim.dujiaoka import DujiaokaWriter
from monitor.sim.shop import ShopOrder
from tests.ingest.test_dujiaoka_source import schema
from tests.routing.rig import AppRig

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
defaults: {pay_timeout: 15m, callback_deadline: 5m, min_orders: 5, windows: [15m, 1h]}
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, severity: critical,
     actions: [notify, drain]}
notify: {language: en}
routing:
  sinks:
    - {kind: sql, flavour: dujiaoka, url: "${SHOP_DB}", channels: {15: main, 17: main, 16: backup}}
  restore: {steps: [0.25, 0.5, 1.0], every: 5m, healthy_for: 10m}
"""
CHANNELS = """\
channels:
  - id: main
    kind: epay
    methods: [alipay]
    weight: 60
    endpoint: http://127.0.0.1:9/main/
    credentials: {pid: "1001", key: "main-key-123456"}
  - id: backup
    kind: epay
    methods: [alipay]
    weight: 40
    endpoint: http://127.0.0.1:9/backup/
    credentials: {pid: "1002", key: "backup-key-123456"}
"""
PAY_IDS = {"main": 15, "main-h5": 17, "backup": 16}


class Proxy:
    """A loopback TCP relay in front of MariaDB: ``down()`` drops every connection and refuses new ones (the
    database "restarts"), ``up()`` lets them through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def down(self) -> None:
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()

    def up(self) -> None:
        self.open = True

    def close(self) -> None:
        self.down()
        self.listener.close()


@pytest.fixture
def djk(mariadb_url: str) -> Iterator[Engine]:
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        for stmt in schema():
            conn.execute(text(stmt))
    writer = DujiaokaWriter(engine, PAY_IDS)
    writer.ensure_pays({"main": ("wxpay", "/pay/yipay"), "main-h5": ("wxpay-h5", "/pay/yipay"),
                        "backup": ("alipay", "/pay/yipay2")})
    yield engine
    engine.dispose()


class Shop(AppRig):
    """paymon with the dujiaoka sink, driven cycle by cycle on a fixed clock, and the shop's database."""

    def __init__(self, folder: Path, clock: FixedClock, db: Engine, url: str, monitor: str | None = None) -> None:
        self.db, self.url = db, url
        self.writer = DujiaokaWriter(db, PAY_IDS)
        super().__init__(folder, clock, monitor or MONITOR, CHANNELS, env={"SHOP_DB": url})

    def order(self, sn: str, channel: str, minutes_ago: float = 1) -> None:
        """A buyer picks ``channel``: dujiaoka writes an unpaid order (status 1)."""
        when = self.clock.now() - timedelta(minutes=minutes_ago)
        self.writer("order_created", ShopOrder(sn, channel, "wxpay", Decimal("10.00"), when),
                    {"ts": when.isoformat()})

    def is_open(self) -> dict[str, int]:
        with self.db.connect() as conn:
            rows = {r.id: r.is_open for r in conn.execute(text("SELECT id, is_open FROM pays"))}
        return {ch: int(rows[pay_id]) for ch, pay_id in PAY_IDS.items()}

    def set_open(self, channel: str, value: int) -> None:
        """The operator flips a gateway in dujiaoka's admin."""
        with self.db.begin() as conn:
            conn.execute(text("UPDATE pays SET is_open = :v WHERE id = :id"), {"v": value, "id": PAY_IDS[channel]})

    def applied(self, channel: str) -> tuple[int, int | None]:
        row = self.app.store.routing_states()[channel]
        return row.target, row.applied

    def drain_main(self) -> list[str]:
        self.probes("main", "ok")
        self.probes("backup", "ok")
        assert self.cycle() == []
        self.probes("main", "timeout", "timeout", "timeout")
        return self.cycle()


@pytest.fixture
def shop(tmp_path: Path, clock: FixedClock, djk: Engine, mariadb_url: str) -> Iterator[Shop]:
    s = Shop(tmp_path / "cfg", clock, djk, mariadb_url)
    yield s
    s.close()


FIRING = ("🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 3 (threshold 3); last 3 "
          "probes (newest first): timeout ×3")


def test_an_unpaid_order_keeps_the_gateway_open_until_its_callback_window_is_clear(shop: Shop) -> None:
    shop.order("D001", "main", minutes_ago=2)
    shop.order("D002", "backup", minutes_ago=1)  # another gateway's order does not hold main open
    lines = shop.drain_main()
    assert lines[:2] == [FIRING, "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"]
    [waiting] = lines[2:]
    assert waiting.startswith("⏳ weight main (main) → 0 waits at sql-dujiaoka:mysql+pymysql://root@")
    assert "1 unpaid order(s) may still get their callback" in waiting
    assert shop.is_open() == {"main": 1, "main-h5": 1, "backup": 1}
    assert shop.applied("main") == (0, 60)

    for _ in range(16):  # D001 was created 2 min before; the window is 15 + 5 min: still inside it
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "timeout")
        assert shop.cycle() == []  # the waiting is said once, not every cycle
    assert shop.is_open()["main"] == 1

    shop.restart()  # a restart does not say it again either
    shop.clock.advance(timedelta(minutes=1))
    shop.probes("main", "timeout")
    assert shop.cycle() == []
    assert shop.is_open()["main"] == 1

    shop.clock.advance(timedelta(minutes=2))  # D001 is now 21 minutes old: no callback can come any more
    shop.probes("main", "timeout")
    assert shop.cycle() == []
    assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}
    assert shop.applied("main") == (0, 0)
    assert [(w.old, w.new) for w in shop.app.store.weight_history(channel="main")] == [(60, 0)]


def test_a_paid_order_does_not_hold_the_gateway(shop: Shop) -> None:
    shop.order("P001", "main", minutes_ago=1)
    with shop.db.begin() as conn:  # paid: its callback has come
        conn.execute(text("UPDATE orders SET status = 4 WHERE order_sn = 'P001'"))
    lines = shop.drain_main()
    assert lines == [FIRING, "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"]
    assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}


def test_restore_opens_only_what_paymon_closed_and_a_hand_closed_gateway_stays_closed(shop: Shop) -> None:
    shop.set_open("main-h5", 0)  # the operator closed one of main's two gateways by hand
    assert shop.drain_main()[1] == "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"
    assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}

    shop.probes("main", "ok")
    restored = shop.cycle()
    for _ in range(25):
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "ok")
        restored += shop.cycle()
    assert restored[1:] == ["⚖️ weight main (main): 0 → 15 (restore step 1/3)",
                            "⚖️ weight main (main): 15 → 30 (restore step 2/3)",
                            "⚖️ weight main (main): 30 → 60 (restore step 3/3)"]
    assert shop.is_open() == {"main": 1, "main-h5": 0, "backup": 1}  # main-h5 is still the operator's
    assert shop.applied("main") == (60, 60)

    shop.set_open("main", 0)  # now the operator closes main altogether: an operator edit, never undone
    shop.clock.advance(timedelta(minutes=1))
    assert shop.cycle() == ["⚖️ weight main (main): 60 → 0 (edited in the shared config)"]
    for _ in range(30):
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "ok")
        assert shop.cycle() == []
    assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}
    history = shop.app.store.weight_history(channel="main")
    assert (history[0].old, history[0].new, history[0].actor) == (60, 0, "operator")


def test_a_gateway_paymon_closed_and_the_operator_reopened_is_the_operators(shop: Shop) -> None:
    shop.drain_main()
    assert shop.is_open()["main"] == 0
    shop.set_open("main", 1)  # opened again by hand while channel_down still fires
    shop.clock.advance(timedelta(minutes=1))
    shop.probes("main", "timeout")
    assert shop.cycle() == ["⚖️ weight main (main): 0 → 60 (edited in the shared config)"]
    for _ in range(5):
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "timeout")
        assert shop.cycle() == []
    # An override while the rule fires is left alone, and the other gateway paymon closed is opened with it.
    assert shop.is_open() == {"main": 1, "main-h5": 1, "backup": 1}


YAML_FIRST = "    - {kind: yaml, path: var/weights.yaml, seed: channels.yaml}\n"


@pytest.mark.parametrize("yaml_first", [False, True], ids=["dujiaoka-only", "yaml-then-dujiaoka"])
def test_a_lost_connection_loses_no_change(tmp_path: Path, clock: FixedClock, djk: Engine, mariadb_url: str,
                                           yaml_first: bool) -> None:
    url = make_url(mariadb_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 3306)
    folder = tmp_path / "cfg"
    if yaml_first:
        folder.mkdir()
        (folder / "monitor.yaml").write_text(MONITOR.replace("  sinks:\n", "  sinks:\n" + YAML_FIRST),
                                             encoding="utf-8")
    shop = Shop(folder, clock, djk, url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False), monitor=(folder / "monitor.yaml").read_text(encoding="utf-8") if yaml_first else None)
    try:
        shop.probes("main", "ok")
        shop.probes("backup", "ok")
        assert shop.cycle() == []

        # The sink's pooled connection is killed from another connection: the next use reconnects.
        with djk.connect() as conn:
            ids = conn.execute(text("SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                                    "AND id <> CONNECTION_ID()")).scalars().all()
            for i in ids:
                conn.execute(text(f"KILL {int(i)}"))
        proxy.down()  # and then the database goes away altogether
        shop.probes("main", "timeout", "timeout", "timeout")
        drained = "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"
        # With the YAML file first the change is decided and written there; with only dujiaoka paymon cannot
        # see the shop's switches, so it decides nothing yet.
        assert shop.cycle() == ([FIRING, drained] if yaml_first else [FIRING])
        assert shop.is_open()["main"] == 1
        if yaml_first:
            assert shop.applied("main") == (0, 60)  # written to the file, not to dujiaoka: not applied

        shop.restart()  # paymon restarts while the shop's database is still away
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "timeout")
        assert shop.cycle() == []
        assert shop.is_open()["main"] == 1

        proxy.up()
        shop.clock.advance(timedelta(minutes=1))
        shop.probes("main", "timeout")
        assert shop.cycle() == ([] if yaml_first else [drained])
        assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}
        assert shop.applied("main") == (0, 0)
        assert [(w.old, w.new) for w in shop.app.store.weight_history(channel="main")] == [(60, 0)]
    finally:
        shop.close()
        proxy.close()


def test_the_readme_grant_is_enough(tmp_path: Path, clock: FixedClock, djk: Engine, mariadb_url: str) -> None:
    """The MySQL user the README tells operators to create (SELECT on orders, SELECT and UPDATE of is_open on
    pays) can do everything the sink does."""
    url = make_url(mariadb_url)
    user = f"paymon_r{uuid.uuid4().hex[:8]}"
    db = url.database
    with djk.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'routing-pass-1'"))
        conn.execute(text(f"GRANT SELECT ON {db}.orders TO '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT (id, is_open), UPDATE (is_open) ON {db}.pays TO '{user}'@'%'"))
    shop = Shop(tmp_path / "cfg", clock, djk,
                url.set(username=user, password="routing-pass-1").render_as_string(hide_password=False))
    try:
        shop.order("G001", "main", minutes_ago=1)
        assert shop.drain_main()[2].startswith("⏳ weight main (main) → 0 waits at sql-dujiaoka:")
        shop.clock.advance(timedelta(minutes=21))
        shop.probes("main", "timeout")
        shop.cycle()
        assert shop.is_open() == {"main": 0, "main-h5": 0, "backup": 1}
        assert "routing-pass-1" not in shop.out.getvalue()
    finally:
        shop.close()
        with djk.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
