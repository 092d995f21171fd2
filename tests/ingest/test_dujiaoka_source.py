"""The dujiaoka source: dujiaoka's own ``orders`` rows (written as dujiaoka writes them) read into the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from monitor.clock import FixedClock
from monitor.ingest.dujiaoka import DujiaokaSource, DujiaokaUnavailable
from monitor.sim.dujiaoka import DujiaokaWriter, beijing
from monitor.sim.shop import ShopOrder
from monitor.store import Checkpoint, Store
from monitor.store import tables as t

DDL = Path(__file__).resolve().parents[1] / "data" / "dujiaoka.sql"
SOURCE_ID = "dujiaoka:test"
PAY_CHANNELS = {15: "epay-main", 16: "epay-backup"}


def schema() -> list[str]:
    body = "\n".join(line for line in DDL.read_text(encoding="utf-8").splitlines() if not line.startswith("--"))
    return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


@pytest.fixture
def djk(mariadb_url: str) -> Iterator[Engine]:
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        for stmt in schema():
            conn.execute(text(stmt))
    yield engine
    engine.dispose()


@pytest.fixture
def writer(djk: Engine) -> DujiaokaWriter:
    # "ghost" has a pays row paymon does not map (pay_id 99).
    w = DujiaokaWriter(djk, {"epay-main": 15, "epay-backup": 16, "ghost": 99})
    w.ensure_pays({"epay-main": ("wxpay", "/pay/yipay"), "epay-backup": ("alipay", "/pay/yipay2"),
                   "ghost": ("qqpay", "/pay/yipay3")})
    return w


def source(mariadb_url: str, store: Store, clock: FixedClock, **kw: Any) -> DujiaokaSource:
    return DujiaokaSource(source_id=SOURCE_ID, url=mariadb_url, pay_channels=PAY_CHANNELS, store=store, clock=clock,
                          **kw)


class Shop:
    """Drives the writer the way the simulated shop does, at chosen times."""

    def __init__(self, writer: DujiaokaWriter, clock: FixedClock) -> None:
        self.writer = writer
        self.clock = clock
        self.orders: dict[str, ShopOrder] = {}

    def at(self, minutes: float) -> datetime:
        return self.clock.now() + timedelta(minutes=minutes)

    def create(self, sn: str, channel: str, minutes: float, amount: str = "10.00") -> datetime:
        when = self.at(minutes)
        order = ShopOrder(sn, channel, "wxpay", Decimal(amount), when)
        self.orders[sn] = order
        self.writer("order_created", order, {"ts": when.isoformat()})
        return when

    def pay(self, sn: str, minutes: float) -> datetime:
        when = self.at(minutes)
        self.writer("order_paid", self.orders[sn], {"ts": when.isoformat(), "trade_no": f"T-{sn}"})
        return when

    def expire(self, sn: str, minutes: float) -> datetime:
        when = self.at(minutes)
        self.writer("order_expired", self.orders[sn], {"ts": when.isoformat()})
        return when


def set_status(engine: Engine, sn: str, status: int, when: datetime, trade_no: str = "") -> None:
    """What dujiaoka's processAuto (stock shortage → 6) or the admin does to a row."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET status = :s, trade_no = :tn, updated_at = :at WHERE order_sn = :sn"),
                     {"s": status, "tn": trade_no, "at": beijing(when), "sn": sn})


def order_rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r.order_id: dict(r._mapping) for r in conn.execute(select(t.orders))}


def test_orders_follow_dujiaoka_rows(djk: Engine, writer: DujiaokaWriter, mariadb_url: str, sqlite_store: Store,
                                     clock: FixedClock) -> None:
    shop = Shop(writer, clock)
    a_created = shop.create("AAAAPAIDDELIVER1", "epay-main", -30, "12.50")
    a_paid = shop.pay("AAAAPAIDDELIVER1", -29)
    b_created = shop.create("BBBBUNPAIDEXPIRE", "epay-main", -20)
    c_created = shop.create("CCCCABNORMAL0001", "epay-backup", -15)
    c_paid = shop.at(-14)
    set_status(djk, "CCCCABNORMAL0001", 6, c_paid, trade_no="T-C")  # paid, not delivered (no cards left)
    shop.create("DDDDUNMAPPEDPAY1", "ghost", -12)
    e_created = shop.create("EEEEPAIDLATER001", "epay-backup", -10)

    src = source(mariadb_url, sqlite_store, clock)
    r = src.poll()
    # A: created, paid, callback, delivered; B: created; C: created, paid, callback; E: created.
    assert (r.accepted, r.duplicate, r.rejected, r.reasons) == (9, 0, 1, {"unknown_channel": 1})
    assert sqlite_store.order_count() == 4
    assert sqlite_store.checkpoint(SOURCE_ID) == Checkpoint(SOURCE_ID, "orders", 5)

    rows = order_rows(sqlite_store)
    assert "DDDDUNMAPPEDPAY1" not in rows
    a = rows["AAAAPAIDDELIVER1"]
    # Beijing wall clock as written, read back as the exact UTC instant.
    assert a["created_at"] == a_created
    assert a["callback_at"] == a["shop_paid_at"] == a["delivered_at"] == a_paid
    assert (a["channel"], a["trade_no"], Decimal(a["amount"]), a["method"]) == ("epay-main", "T-AAAAPAIDDELIVER1",
                                                                               Decimal("12.50"), None)
    assert a["expired_at"] is None and a["unverified_callback_at"] is None
    b = rows["BBBBUNPAIDEXPIRE"]
    assert b["created_at"] == b_created
    assert b["callback_at"] is None and b["shop_paid_at"] is None and b["expired_at"] is None
    c = rows["CCCCABNORMAL0001"]
    assert (c["channel"], c["trade_no"], c["created_at"]) == ("epay-backup", "T-C", c_created)
    assert c["callback_at"] == c["shop_paid_at"] == c_paid
    assert c["delivered_at"] is None
    e = rows["EEEEPAIDLATER001"]
    assert (e["created_at"], e["shop_paid_at"]) == (e_created, None)

    # B expires (OrderExpired job) and E gets paid: no new ids, seen through the re-read range.
    b_expired = shop.expire("BBBBUNPAIDEXPIRE", -5)
    e_paid = shop.pay("EEEEPAIDLATER001", -4)
    r = src.poll()
    # A changed row is re-read whole: its order_created comes back as a duplicate.
    assert (r.accepted, r.duplicate, r.rejected) == (1 + 3, 2, 0)
    rows = order_rows(sqlite_store)
    assert rows["BBBBUNPAIDEXPIRE"]["expired_at"] == b_expired
    assert rows["BBBBUNPAIDEXPIRE"]["shop_paid_at"] is None
    e = rows["EEEEPAIDLATER001"]
    assert e["callback_at"] == e["shop_paid_at"] == e["delivered_at"] == e_paid
    assert e["trade_no"] == "T-EEEEPAIDLATER001"
    assert sqlite_store.order_count() == 4

    # Nothing new: nothing accepted, nothing re-sent.
    r = src.poll()
    assert (r.accepted, r.duplicate, r.rejected) == (0, 0, 0)
    src.close()

    # A restart resumes at the checkpoint: the re-read range comes back as duplicates only, the unmapped row is
    # not counted again, and the new order is the only one accepted.
    f_created = shop.create("FFFFAFTERRESTART", "epay-main", -2)
    again = source(mariadb_url, sqlite_store, clock)
    r = again.poll()
    assert (r.accepted, r.duplicate, r.rejected) == (1, 4 + 2 + 3 + 4, 0)
    assert sqlite_store.order_count() == 5
    assert order_rows(sqlite_store)["FFFFAFTERRESTART"]["created_at"] == f_created
    assert sqlite_store.checkpoint(SOURCE_ID) == Checkpoint(SOURCE_ID, "orders", 6)
    r = again.poll()
    assert (r.accepted, r.duplicate, r.rejected) == (0, 0, 0)
    again.close()


def test_batches_deleted_rows_and_status_five(djk: Engine, writer: DujiaokaWriter, mariadb_url: str,
                                              sqlite_store: Store, clock: FixedClock) -> None:
    shop = Shop(writer, clock)
    for i in range(7):
        shop.create(f"BATCH{i:011d}", "epay-main", -60 + i)
    set_status(djk, "BATCH00000000003", 5, shop.at(-30))  # admin: 处理失败 → nothing beyond created
    with djk.begin() as conn:
        conn.execute(text("UPDATE orders SET deleted_at = updated_at WHERE order_sn = 'BATCH00000000006'"))
    src = source(mariadb_url, sqlite_store, clock, batch=2)
    r = src.poll()
    assert (r.accepted, r.rejected) == (6, 0)
    assert sqlite_store.order_count() == 6
    assert sqlite_store.checkpoint(SOURCE_ID) == Checkpoint(SOURCE_ID, "orders", 6)
    rows = order_rows(sqlite_store)
    assert rows["BATCH00000000003"]["shop_paid_at"] is None and rows["BATCH00000000003"]["expired_at"] is None
    src.close()


def test_late_commits_and_future_rows_are_picked_up(djk: Engine, writer: DujiaokaWriter, mariadb_url: str,
                                                    sqlite_store: Store, clock: FixedClock) -> None:
    shop = Shop(writer, clock)
    shop.create("LATE000000000001", "epay-main", -10)
    shop.create("LATE000000000003", "epay-main", -9)
    future = shop.create("FUTURE0000000004", "epay-main", 60)  # a row an hour ahead of paymon's clock
    with djk.begin() as conn:  # id 2 ends up committed after 3 and 4 were read
        conn.execute(text("UPDATE orders SET id = id + 1 WHERE id >= 2 ORDER BY id DESC"))
    src = source(mariadb_url, sqlite_store, clock)
    r = src.poll()
    assert (r.accepted, r.rejected, r.reasons) == (2, 1, {"future_timestamp": 1})
    with djk.begin() as conn:
        conn.execute(text(
            "INSERT INTO orders (id, order_sn, goods_id, title, email, pay_id, buy_ip, status, actual_price, "
            "created_at, updated_at) VALUES (2, 'LATE000000000002', 1, 't', 'e@x', 16, '1.1.1.1', 1, 3.00, :at, :at)"),
            {"at": beijing(shop.at(-9.5))})
    assert src.poll().accepted == 1
    clock.advance(timedelta(hours=2))
    r = src.poll()
    assert (r.accepted, r.rejected) == (1, 0)
    assert order_rows(sqlite_store)["FUTURE0000000004"]["created_at"] == future
    assert sqlite_store.order_count() == 4
    src.close()


def test_unreachable_database_is_an_oserror(sqlite_store: Store, clock: FixedClock) -> None:
    src = DujiaokaSource(source_id=SOURCE_ID, url="mysql+pymysql://paymon:s3cret@127.0.0.1:1/shop",
                         pay_channels=PAY_CHANNELS, store=sqlite_store, clock=clock)
    with pytest.raises(DujiaokaUnavailable) as info:
        src.poll()
    assert isinstance(info.value, OSError)
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(src)
    src.close()


def test_built_from_the_config_and_polled_by_the_pipeline(tmp_path: Path, mariadb_url: str) -> None:
    from sqlalchemy import create_engine, text

    from monitor.cli import build_app
    from monitor.config import load_config
    from monitor.ingest import DujiaokaSource
    from tests.test_pipeline import CHANNELS

    engine = create_engine(mariadb_url)
    ddl = (Path(__file__).resolve().parents[1] / "data" / "dujiaoka.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    with engine.begin() as conn:
        for stmt in (s.strip() for s in body.split(";")):
            if stmt:
                conn.execute(text(stmt))
        conn.execute(text(
            "INSERT INTO orders (order_sn, goods_id, title, email, pay_id, buy_ip, status, actual_price, created_at, "
            "updated_at) VALUES ('CFG1', 1, 't', 'e@x', 15, '127.0.0.1', 1, 9.90, NOW(), NOW())"))
    engine.dispose()
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(
        'storage: {url: "sqlite:///paymon.db"}\n'
        'sources: [{kind: dujiaoka, url: "${SHOP_DB}", channels: {15: main}}]\n', encoding="utf-8")
    app = build_app(load_config(tmp_path / "monitor.yaml", env={"SHOP_DB": mariadb_url}))
    try:
        [src] = app.pipeline.sources
        assert isinstance(src, DujiaokaSource)
        assert app.pipeline.ingest().accepted == 1
        assert app.store.order_count() == 1
    finally:
        app.pipeline.close()
        app.store.close()
