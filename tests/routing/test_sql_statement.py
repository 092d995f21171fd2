"""The ``sql`` sink with ``statement:`` (a configured UPDATE for other shops) on SQLite and MariaDB, checked at
config load, and several sinks at once: every change reaches every sink, and counts as applied only then."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.routing.statement import statement_problem
from monitor.routing.yaml_file import YamlWeightSink
from tests.routing.rig import AppRig
from tests.routing.test_dujiaoka_sink import CHANNELS, MONITOR

STATEMENT = "UPDATE shop_gateways SET weight = :weight WHERE code = :channel"
SHOP_DDL = ("CREATE TABLE shop_gateways (code VARCHAR(64) PRIMARY KEY, weight INT NOT NULL, "
            "note VARCHAR(100) DEFAULT 'kept')")


@pytest.mark.parametrize(("sql", "problem"), [
    (STATEMENT, None),
    (STATEMENT + ";", None),
    ("update t set w = :weight, note = 'a;b:c' where id = :channel", None),
    ("DELETE FROM t WHERE id = :channel AND w = :weight", "must be an UPDATE statement"),
    (STATEMENT + "; DROP TABLE t", "one statement only (found ';' between statements)"),
    ("UPDATE t SET w = :weight WHERE id = :id", "the parameters must be exactly :channel and :weight (missing "
                                                 ":channel; unknown parameter(s) :id)"),
    ("UPDATE t SET w = 1 WHERE id = :channel", "the parameters must be exactly :channel and :weight (missing "
                                               ":weight)"),
    ("UPDATE t SET w = :weight WHERE id = :channel -- x", "no comments in the statement, please (write one plain "
                                                          "UPDATE)"),
])
def test_statement_rules(sql: str, problem: str | None) -> None:
    assert statement_problem(sql) == problem


def test_a_bad_statement_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(
        "routing:\n  sinks:\n    - kind: sql\n      url: sqlite:///shop.db\n"
        "      statement: DELETE FROM t WHERE id = :channel AND w = :weight\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "monitor.yaml", env={})
    assert str(err.value).endswith("monitor.yaml:5 routing.sinks[0].statement: must be an UPDATE statement")


def test_sql_needs_a_flavour_or_a_statement(tmp_path: Path) -> None:
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text("routing: {sink: {kind: sql, url: 'sqlite:///shop.db'}}\n",
                                           encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "monitor.yaml", env={})
    assert "routing.sink.flavour" in str(err.value)
    assert "give flavour: dujiaoka" in str(err.value)


class Rig(AppRig):
    """paymon with the sinks of ``sinks`` (YAML text), on a fixed clock; the shop's table at ``shop_url``."""

    def __init__(self, folder: Path, clock: FixedClock, shop_url: str, sinks: str) -> None:
        monitor = MONITOR[: MONITOR.index("  sinks:\n")] + "  sinks:\n" + sinks + MONITOR[MONITOR.index("  restore"):]
        self.shop_url = shop_url
        self.shop = create_engine(shop_url)
        super().__init__(folder, clock, monitor, CHANNELS, env={"SHOP_DB": shop_url})

    def shop_weights(self) -> dict[str, tuple[int, str]]:
        with self.shop.connect() as conn:
            rows = conn.execute(text("SELECT code, weight, note FROM shop_gateways"))
            return {r.code: (r.weight, r.note) for r in rows}

    def applied(self, channel: str) -> tuple[int, int | None]:
        row = self.app.store.routing_states()[channel]
        return row.target, row.applied


def _shop_table(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(SHOP_DDL))
        conn.execute(text("INSERT INTO shop_gateways (code, weight) VALUES ('main', 60), ('backup', 40)"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
def shop_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = (f"sqlite:///{tmp_path / 'shop.db'}" if request.param == "sqlite"
           else request.getfixturevalue("mariadb_url"))
    _shop_table(url)
    yield url


STATEMENT_SINK = f'    - {{kind: sql, url: "${{SHOP_DB}}", statement: "{STATEMENT}"}}\n'
YAML_SINK = "    - {kind: yaml, path: var/weights.yaml, seed: channels.yaml}\n"


def test_statement_sink_follows_drain_and_restore(tmp_path: Path, clock: FixedClock, shop_url: str) -> None:
    rig = Rig(tmp_path / "cfg", clock, shop_url, STATEMENT_SINK)
    try:
        rig.probes("main", "ok")
        rig.probes("backup", "ok")
        assert rig.cycle() == []
        assert rig.shop_weights() == {"main": (60, "kept"), "backup": (40, "kept")}  # nothing written yet
        rig.probes("main", "timeout", "timeout", "timeout")
        assert rig.cycle()[1] == "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"
        assert rig.shop_weights() == {"main": (0, "kept"), "backup": (40, "kept")}
        assert rig.applied("main") == (0, 0)

        rig.restart()  # what the statement sink confirmed survives: nothing is written again
        with rig.shop.begin() as conn:  # (a second write would undo this edit made in the shop)
            conn.execute(text("UPDATE shop_gateways SET note = 'edited' WHERE code = 'backup'"))
        rig.probes("main", "ok")
        lines = rig.cycle()
        for _ in range(25):
            rig.clock.advance(timedelta(minutes=1))
            rig.probes("main", "ok")
            lines += rig.cycle()
        assert lines[1:] == ["⚖️ weight main (main): 0 → 15 (restore step 1/3)",
                             "⚖️ weight main (main): 15 → 30 (restore step 2/3)",
                             "⚖️ weight main (main): 30 → 60 (restore step 3/3)"]
        assert rig.shop_weights() == {"main": (60, "kept"), "backup": (40, "edited")}
    finally:
        rig.close()
        rig.shop.dispose()


def test_several_sinks_each_get_every_change_and_a_failing_one_is_retried(tmp_path: Path,
                                                                          clock: FixedClock) -> None:
    shop_url = f"sqlite:///{tmp_path / 'shop.db'}"
    _shop_table(shop_url)
    rig = Rig(tmp_path / "cfg", clock, shop_url, YAML_SINK + STATEMENT_SINK)
    weights = YamlWeightSink(rig.folder / "var" / "weights.yaml")
    try:
        rig.probes("main", "ok")
        rig.probes("backup", "ok")
        assert rig.cycle() == []
        with rig.shop.begin() as conn:  # the shop's table is gone for a while (a migration, a restore)
            conn.execute(text("ALTER TABLE shop_gateways RENAME TO shop_gateways_away"))
        rig.probes("main", "timeout", "timeout", "timeout")
        assert rig.cycle()[1] == "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"
        assert weights.read() == {"main": 0, "backup": 40}  # the file has it...
        assert rig.applied("main") == (0, 60)  # ...the shop's table not: not applied

        rig.restart()
        rig.clock.advance(timedelta(minutes=1))
        rig.probes("main", "timeout")
        assert rig.cycle() == []
        assert rig.applied("main") == (0, 60)

        with rig.shop.begin() as conn:
            conn.execute(text("ALTER TABLE shop_gateways_away RENAME TO shop_gateways"))
        rig.clock.advance(timedelta(minutes=1))
        rig.probes("main", "timeout")
        assert rig.cycle() == []
        assert rig.shop_weights()["main"] == (0, "kept")
        assert weights.read() == {"main": 0, "backup": 40}
        assert rig.applied("main") == (0, 0)
        assert [(w.old, w.new) for w in rig.app.store.weight_history(channel="main")] == [(60, 0)]
    finally:
        rig.close()
        rig.shop.dispose()


def test_apply_sends_a_change_made_by_hand_to_every_sink_at_once(tmp_path: Path, clock: FixedClock) -> None:
    shop_url = f"sqlite:///{tmp_path / 'shop.db'}"
    _shop_table(shop_url)
    rig = Rig(tmp_path / "cfg", clock, shop_url, YAML_SINK + STATEMENT_SINK)
    try:
        assert rig.cycle() == []
        row = rig.app.store.routing_states()["backup"]
        rig.app.store.save_routing([replace(row, target=10, baseline=10, reason="set by hand")])
        outcome = rig.app.pipeline.routing.apply(clock.now())
        assert outcome.held == [] and outcome.waiting == []
        assert outcome.weights == {"main": 60, "backup": 10}
        assert YamlWeightSink(rig.folder / "var" / "weights.yaml").read()["backup"] == 10
        assert rig.shop_weights()["backup"] == (10, "kept")
        assert rig.applied("backup") == (10, 10)
    finally:
        rig.close()
        rig.shop.dispose()
