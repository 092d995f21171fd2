"""The ``Store``: every read and write paymon makes, each write one transaction.

``Store`` is one object made of facets, each in its own module and owning one concern:

- :mod:`~monitor.store.probes`: probe results;
- :mod:`~monitor.store.orders`: order rows and ingest checkpoints (events and the checkpoint commit together);
- :mod:`~monitor.store.outbox`: queued notifications and their delivery attempts;
- :mod:`~monitor.store.alerts`: alert state, alert history and silences;
- :mod:`~monitor.store.routing`: routing rows and the weight-change audit;
- :mod:`~monitor.store.sink_state`: what write-only weight sinks confirmed, the shop gateways paymon closed, and
  the one "a sink waits" notification per change;
- reconciliation lives in :mod:`~monitor.store.reconcile` (``ReconcileStore(store)``).

This module owns what spans them: opening the database, migrations, health and retention.

Design rules that the rest of paymon relies on:
- ingested events and the source checkpoint commit together, so a crash between reading and committing
  re-reads the same lines and the per-order merge makes the re-read a no-op (nothing lost, nothing doubled);
- alert state, alert history and the notification outbox commit together, so a restart neither re-sends a
  notification nor forgets one;
- the routing target and its audit row commit together; the sinks are written afterwards and ``applied``
  records what reached every one of them, so a crash in between is healed on the next cycle.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, delete, event, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.clock import Clock, SystemClock
from monitor.errors import StorageError
from monitor.models import Checkpoint, OutboxItem, RoutingRow, Silence
from monitor.store import tables as t
from monitor.store.alerts import AlertsFacet, alert_payload
from monitor.store.orders import ORDER_COLUMNS, OrdersFacet, merge_event, orders_to_frame
from monitor.store.outbox import OutboxFacet
from monitor.store.probes import ProbesFacet
from monitor.store.routing import RoutingFacet, weight_payload
from monitor.store.sink_state import SinkStateFacet

# The value types and helpers that used to be defined here stay importable from here.
__all__ = ["ORDER_COLUMNS", "Checkpoint", "OutboxItem", "RoutingRow", "Silence", "Store", "alert_payload",
           "merge_event", "orders_to_frame", "weight_payload"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class Store(ProbesFacet, OrdersFacet, OutboxFacet, AlertsFacet, RoutingFacet, SinkStateFacet):
    """paymon's database. Build it with :meth:`open`, which applies migrations."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()

    # -- lifecycle ---------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, clock: Clock | None = None, migrate: bool = True) -> Store:
        """Connect to ``url`` (creating a SQLite file's folder), and bring the schema to the newest revision."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(url, future=True, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StorageError(f"cannot open storage: {type(exc).__name__}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine, clock=clock)
        if migrate:
            store.migrate()
        return store

    def migrate(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``; existing rows are kept."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot migrate storage ({self.engine.dialect.name}): {exc.__class__.__name__}: "
                               f"{_safe(exc)}") from None

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.engine.connect() as conn:
            try:
                return conn.execute(text("select version_num from alembic_version")).scalar()
            except SQLAlchemyError:
                return None

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    # -- retention ---------------------------------------------------------------------------------------

    def prune(self, *, probes: timedelta, orders: timedelta) -> tuple[int, int]:
        """Delete probe results and orders older than their retention; returns the two row counts."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            p = conn.execute(delete(t.probe_results).where(t.probe_results.c.started_at < now - probes)).rowcount
            o = conn.execute(delete(t.orders).where(t.orders.c.updated_at < now - orders)).rowcount
        return int(p), int(o)


def _safe(exc: BaseException) -> str:
    """The first line of a driver error, without the SQL parameters (which could carry anything)."""
    return str(getattr(exc, "orig", exc)).splitlines()[0][:300] if str(exc) else ""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
