"""Migrations: an older schema with rows in it upgrades without losing them, and the result matches the tables."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from monitor.clock import FixedClock
from monitor.store import Checkpoint, Store
from monitor.store.tables import metadata


def _upgrade_keeps_rows(url: str, clock: FixedClock) -> None:
    old = Store.open(url, clock=clock, migrate=False)
    old.migrate("0001")
    assert old.revision() == "0001"
    with old.engine.begin() as conn:
        conn.execute(text(
            "insert into probe_results (channel, probe, outcome, latency_s, started_at, detail) "
            "values ('c1', 'query', 'ok', 0.25, :t, 'kept')"), {"t": datetime(2026, 1, 1, 12, 0)})
        conn.execute(text(
            "insert into orders (order_id, channel, created_at, updated_at) values ('A1', 'c1', :t, :t)"),
            {"t": datetime(2026, 1, 1, 12, 0)})
        conn.execute(text(
            "insert into ingest_checkpoints (source, file_id, position, updated_at) values ('jsonl:x', '1:2', 10, :t)"),
            {"t": datetime(2026, 1, 1, 12, 0)})
    old.close()

    new = Store.open(url, clock=clock)  # opening migrates to head
    assert new.revision() == "0009"
    [probe] = new.probe_results()
    assert (probe.detail, probe.latency_s, probe.value) == ("kept", 0.25, None)
    assert probe.started_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert new.order_count() == 1
    assert new.checkpoint("jsonl:x") == Checkpoint("jsonl:x", "1:2", 10, None, 0)  # no fingerprint yet (0006)
    assert new.alert_states() == {}  # the tables of 0002 exist and work
    with new.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], diff
    new.close()


def test_sqlite_upgrade_keeps_rows(tmp_path, clock) -> None:  # type: ignore[no-untyped-def]
    _upgrade_keeps_rows(f"sqlite:///{tmp_path / 'old.db'}", clock)


def test_postgres_upgrade_keeps_rows(pg_url, clock) -> None:  # type: ignore[no-untyped-def]
    _upgrade_keeps_rows(pg_url, clock)


def test_mariadb_upgrade_keeps_rows(mariadb_url, clock) -> None:  # type: ignore[no-untyped-def]
    _upgrade_keeps_rows(mariadb_url, clock)


def test_opening_twice_is_a_no_op(tmp_path, clock) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'p.db'}"
    Store.open(url, clock=clock).close()
    s = Store.open(url, clock=clock)
    assert s.revision() == "0009"
    s.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
    engine.dispose()
