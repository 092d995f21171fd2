"""The ``Store``: every read and write paymon makes, each write one transaction.

Design rules that the rest of paymon relies on:
- ingested events and the source checkpoint commit together, so a crash between reading and committing
  re-reads the same lines and the per-order merge makes the re-read a no-op (nothing lost, nothing doubled);
- alert state, alert history and the notification outbox commit together, so a restart neither re-sends a
  notification nor forgets one;
- the routing target and its audit row commit together; the file is written afterwards and ``applied``
  records what reached it, so a crash in between is healed on the next cycle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from monitor.clock import Clock, SystemClock
from monitor.errors import StorageError
from monitor.models import AlertEvent, AlertState, IngestResult, OrderEvent, ProbeResult, WeightChange
from monitor.store import tables as t

__all__ = ["ORDER_COLUMNS", "Checkpoint", "OutboxItem", "RoutingRow", "Silence", "Store", "merge_event"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

#: Lifecycle columns of an order row, in funnel order.
ORDER_COLUMNS: tuple[str, ...] = (
    "created_at",
    "redirected_at",
    "returned_at",
    "channel_paid_at",
    "callback_at",
    "unverified_callback_at",
    "shop_paid_at",
    "delivered_at",
    "expired_at",
)
_EVENT_COLUMN = {
    "order_created": "created_at",
    "pay_redirect": "redirected_at",
    "return_received": "returned_at",
    "order_paid": "shop_paid_at",
    "order_delivered": "delivered_at",
    "order_expired": "expired_at",
}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source stopped: which file (``file_id``, e.g. ``dev:inode``) and the byte offset or row id in it."""

    source: str
    file_id: str
    position: int


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A queued notification for one sink."""

    id: int
    sink: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RoutingRow:
    """paymon's routing bookkeeping for one channel (see ``tables.routing_state``)."""

    channel: str
    baseline: int
    target: int
    applied: int | None
    step: int
    reason: str
    changed_at: datetime
    healthy_since: datetime | None = None
    operator_hold: bool = False


@dataclass(frozen=True, slots=True)
class Silence:
    """Notifications for ``channel`` (and ``rule``, or every rule when None) are muted until ``ends_at``."""

    id: int
    channel: str
    rule: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    reason: str


def _earlier(current: datetime | None, new: datetime | None) -> datetime | None:
    if new is None:
        return current
    if current is None or new < current:
        return new
    return current


def merge_event(row: dict[str, Any], ev: OrderEvent) -> bool:
    """Fold one event into an order row in place; True if the row changed (False = a duplicate).

    Each lifecycle column keeps the *earliest* time seen, so replaying any event, in any order, any number of
    times, converges on the same row.
    """
    before = dict(row)
    if ev.event == "callback_received":
        column = "callback_at" if ev.verified is not False else "unverified_callback_at"
        row[column] = _earlier(row.get(column), ev.ts)
        row["channel_paid_at"] = _earlier(row.get("channel_paid_at"), ev.paid_at)
    else:
        column = _EVENT_COLUMN[ev.event]
        row[column] = _earlier(row.get(column), ev.ts)
    if ev.trade_no and not row.get("trade_no"):
        row["trade_no"] = ev.trade_no
    if ev.method and not row.get("method"):
        row["method"] = ev.method
    if ev.amount is not None and not row.get("amount"):
        row["amount"] = str(ev.amount)
    return row != before


#: The columns ``apply_events`` reads, merges and writes (besides ``order_id`` and ``updated_at``); an order row's
#: other columns are never touched. A row being merged is a list of these, as the database driver hands them over.
_ROW_COLUMNS: tuple[str, ...] = ("channel", "method", "amount", "trade_no", *ORDER_COLUMNS)
_SLOT = {c: i for i, c in enumerate(_ROW_COLUMNS)}
_EVENT_SLOT = {e: _SLOT[c] for e, c in _EVENT_COLUMN.items()}
_METHOD, _AMOUNT, _TRADE_NO = _SLOT["method"], _SLOT["amount"], _SLOT["trade_no"]
_CALLBACK, _UNVERIFIED, _PAID = _SLOT["callback_at"], _SLOT["unverified_callback_at"], _SLOT["channel_paid_at"]


def _fold(
    rows: dict[str, list[Any]], events: Sequence[OrderEvent], stored: Callable[[datetime], Any]
) -> tuple[int, dict[str, list[Any]]]:
    """:func:`merge_event` for a batch, on rows of driver values (times as ``stored`` makes them).

    Adds a row to ``rows`` for each new order; returns how many events changed a row, and the rows they changed.
    Times compare as driver values: aware or naive UTC datetimes, or SQLite's fixed-width UTC text, which sorts
    in time order.
    """
    accepted = 0
    changed: dict[str, list[Any]] = {}
    for ev in events:
        oid = ev.order_id
        row = rows.get(oid)
        if row is None:
            row = rows[oid] = [ev.channel, None, None, None, None, None, None, None, None, None, None, None, None]
        kind = ev.event
        if kind == "callback_received":
            slot = _UNVERIFIED if ev.verified is False else _CALLBACK
            paid = ev.paid_at
        else:
            slot = _EVENT_SLOT[kind]
            paid = None
        hit = False
        at = stored(ev.ts)
        old = row[slot]
        if old is None or at < old:
            row[slot] = at
            hit = True
        if paid is not None:
            at = stored(paid)
            old = row[_PAID]
            if old is None or at < old:
                row[_PAID] = at
                hit = True
        if ev.trade_no and not row[_TRADE_NO]:
            row[_TRADE_NO] = ev.trade_no
            hit = True
        if ev.method and not row[_METHOD]:
            row[_METHOD] = ev.method
            hit = True
        if ev.amount is not None and not row[_AMOUNT]:
            row[_AMOUNT] = str(ev.amount)
            hit = True
        if hit:
            accepted += 1
            changed[oid] = row
    return accepted, changed


class Store:
    """paymon's database. Build it with :meth:`open`, which applies migrations."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()

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

    # -- probes ------------------------------------------------------------------------------------------

    def add_probe_results(self, results: Iterable[ProbeResult]) -> None:
        rows = [
            {
                "channel": r.channel,
                "probe": r.probe,
                "outcome": r.outcome,
                "latency_s": r.latency_s,
                "started_at": r.started_at,
                "code": r.code,
                "detail": r.detail,
                "value": r.value,
            }
            for r in results
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(t.probe_results), rows)

    def probe_results(
        self, *, channel: str | None = None, probe: str | None = None, since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ProbeResult]:
        """Probe results, newest first."""
        q = select(t.probe_results).order_by(t.probe_results.c.started_at.desc(), t.probe_results.c.id.desc())
        if channel is not None:
            q = q.where(t.probe_results.c.channel == channel)
        if probe is not None:
            q = q.where(t.probe_results.c.probe == probe)
        if since is not None:
            q = q.where(t.probe_results.c.started_at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_probe(r._mapping) for r in conn.execute(q)]

    def last_probes(self) -> dict[tuple[str, str], ProbeResult]:
        """The newest result of every (channel, probe)."""
        p = t.probe_results
        newest = (
            select(p.c.channel, p.c.probe, func.max(p.c.id).label("id")).group_by(p.c.channel, p.c.probe).subquery()
        )
        q = select(p).join(newest, p.c.id == newest.c.id)
        with self.engine.connect() as conn:
            return {(r.channel, r.probe): _probe(r._mapping) for r in conn.execute(q)}

    def probe_failures_in_a_row(self) -> dict[tuple[str, str], int]:
        """For every (channel, probe): how many of the newest results in a row are not ``ok``."""
        p = t.probe_results
        last_ok = (
            select(p.c.channel, p.c.probe, func.max(p.c.id).label("ok_id"))
            .where(p.c.outcome == "ok")
            .group_by(p.c.channel, p.c.probe)
            .subquery()
        )
        q = (
            select(p.c.channel, p.c.probe, func.count(p.c.id))
            .select_from(p.outerjoin(last_ok, and_(p.c.channel == last_ok.c.channel, p.c.probe == last_ok.c.probe)))
            .where(or_(last_ok.c.ok_id.is_(None), p.c.id > last_ok.c.ok_id))
            .group_by(p.c.channel, p.c.probe)
        )
        out: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for channel, probe, n in conn.execute(q):
                out[(channel, probe)] = int(n)
            seen = conn.execute(select(p.c.channel, p.c.probe).distinct()).all()
        for channel, probe in seen:
            out.setdefault((channel, probe), 0)
        return out

    # -- orders ------------------------------------------------------------------------------------------

    def checkpoint(self, source: str) -> Checkpoint | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.ingest_checkpoints).where(t.ingest_checkpoints.c.source == source)).first()
        return None if r is None else Checkpoint(r.source, r.file_id, r.position)

    def apply_events(
        self, events: Sequence[OrderEvent], *, checkpoint: Checkpoint | None = None, rejected: int = 0,
        reasons: dict[str, int] | None = None,
    ) -> IngestResult:
        """Merge order events into order rows and move the checkpoint, in one transaction.

        Each event is folded into its order as :func:`merge_event` does, in order, so ``accepted`` counts the events
        that changed a row and ``duplicate`` those that did not. The rows the batch touches are read once, and the
        changed ones written with one upsert whose SQL keeps the earliest time per column and the first
        ``method``/``amount``/``trade_no``, so a writer that got in between is merged with, never overwritten.
        ``rejected``/``reasons`` are passed through into the result so a source reports one total per batch.
        """
        now = self.clock.now()
        with self.engine.begin() as conn:
            stored = _stored_time(conn)
            rows = _stored_orders(conn, list({e.order_id: None for e in events}))
            accepted, changed = _fold(rows, events, stored)
            if changed:
                updated = stored(now)
                conn.exec_driver_sql(_upsert_sql(conn), [(oid, *row, updated) for oid, row in changed.items()])
            if checkpoint is not None:
                self._save_checkpoint(conn, checkpoint, now)
        return IngestResult(accepted, len(events) - accepted, rejected, dict(reasons or {}))

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.engine.begin() as conn:
            self._save_checkpoint(conn, checkpoint, self.clock.now())

    def _save_checkpoint(self, conn: Connection, cp: Checkpoint, now: datetime) -> None:
        values = {"file_id": cp.file_id, "position": cp.position, "updated_at": now}
        c = t.ingest_checkpoints.c
        if conn.execute(update(t.ingest_checkpoints).where(c.source == cp.source).values(**values)).rowcount == 0:
            conn.execute(insert(t.ingest_checkpoints).values(source=cp.source, **values))

    def orders_frame(self, since: datetime) -> pd.DataFrame:
        """Orders created or changed since ``since``, one row each, lifecycle columns as UTC datetimes."""
        o = t.orders
        q = select(o).where(or_(o.c.created_at >= since, o.c.updated_at >= since))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        return orders_to_frame(rows)

    def order_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.orders)).scalar_one())

    # -- alerts ------------------------------------------------------------------------------------------

    def alert_states(self) -> dict[tuple[str, str], AlertState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.alert_states)).all()
        return {
            (r.rule, r.channel): AlertState(
                r.rule, r.channel, r.state, r.pending_since, r.fired_at, r.last_notified_at, r.reminders, r.value,
                r.detector,
            )
            for r in rows
        }

    def save_alerts(self, states: Iterable[AlertState], events: Sequence[AlertEvent], sinks: Sequence[str]) -> None:
        """Persist changed alert states, their history, and one outbox row per (event, sink), atomically."""
        now = self.clock.now()
        c = t.alert_states.c
        with self.engine.begin() as conn:
            for s in states:
                values = {
                    "state": s.state,
                    "pending_since": s.pending_since,
                    "fired_at": s.fired_at,
                    "last_notified_at": s.last_notified_at,
                    "reminders": s.reminders,
                    "value": s.value,
                    "detector": s.detector,
                    "updated_at": now,
                }
                stmt = update(t.alert_states).where(c.rule == s.rule, c.channel == s.channel).values(**values)
                if conn.execute(stmt).rowcount == 0:
                    conn.execute(insert(t.alert_states).values(rule=s.rule, channel=s.channel, **values))
            for e in events:
                conn.execute(
                    insert(t.alert_history).values(
                        rule=e.rule, channel=e.channel, kind=e.kind, severity=e.severity, value=e.value,
                        threshold=e.threshold, summary=e.summary, at=e.at,
                    )
                )
                for sink in sinks:
                    self._enqueue(conn, sink, e.key, alert_payload(e), now)

    def _enqueue(self, conn: Connection, sink: str, key: str, payload: dict[str, Any], now: datetime) -> bool:
        o = t.outbox.c
        if conn.execute(select(o.id).where(o.sink == sink, o.dedupe_key == key)).first() is not None:
            return False
        conn.execute(
            insert(t.outbox).values(
                sink=sink, dedupe_key=key, payload=json.dumps(payload, ensure_ascii=False), created_at=now,
                attempts=0, next_attempt_at=now,
            )
        )
        return True

    def due_outbox(self, sink: str, *, limit: int = 100) -> list[OutboxItem]:
        """Undelivered, not given-up items of ``sink`` whose next attempt is due, oldest first."""
        o = t.outbox.c
        q = (
            select(t.outbox)
            .where(o.sink == sink, o.sent_at.is_(None), o.failed_at.is_(None), o.next_attempt_at <= self.clock.now())
            .order_by(o.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [OutboxItem(r.id, r.sink, json.loads(r.payload), r.attempts, r.created_at)
                    for r in conn.execute(q)]

    def outbox_depth(self) -> dict[str, int]:
        o = t.outbox.c
        q = select(o.sink, func.count()).where(o.sent_at.is_(None), o.failed_at.is_(None)).group_by(o.sink)
        with self.engine.connect() as conn:
            return {sink: int(n) for sink, n in conn.execute(q)}

    def mark_sent(self, item_id: int) -> None:
        self._outbox_update(item_id, sent_at=self.clock.now(), attempts=t.outbox.c.attempts + 1, last_error=None)

    def mark_retry(self, item_id: int, error: str, next_attempt_at: datetime) -> None:
        self._outbox_update(
            item_id, next_attempt_at=next_attempt_at, attempts=t.outbox.c.attempts + 1, last_error=error[:2000]
        )

    def mark_failed(self, item_id: int, error: str) -> None:
        self._outbox_update(
            item_id, failed_at=self.clock.now(), attempts=t.outbox.c.attempts + 1, last_error=error[:2000]
        )

    def _outbox_update(self, item_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id == item_id).values(**values))

    def alert_history(self, *, since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        h = t.alert_history
        q = select(h).order_by(h.c.at.desc(), h.c.id.desc()).limit(limit)
        if since is not None:
            q = q.where(h.c.at >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # -- silences ----------------------------------------------------------------------------------------

    def add_silence(
        self, channel: str, ends_at: datetime, *, rule: str | None = None, created_by: str = "cli", reason: str = ""
    ) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(
                insert(t.silences).values(
                    channel=channel, rule=rule, starts_at=self.clock.now(), ends_at=ends_at, created_by=created_by,
                    reason=reason, active=True,
                )
            )
            key = res.inserted_primary_key
            assert key is not None
            return int(key[0])

    def active_silences(self) -> list[Silence]:
        s = t.silences.c
        now = self.clock.now()
        q = select(t.silences).where(s.active.is_(True), s.starts_at <= now, s.ends_at > now).order_by(s.id)
        with self.engine.connect() as conn:
            return [
                Silence(r.id, r.channel, r.rule, r.starts_at, r.ends_at, r.created_by, r.reason)
                for r in conn.execute(q)
            ]

    # -- routing -----------------------------------------------------------------------------------------

    def routing_states(self) -> dict[str, RoutingRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.routing_state)).all()
        return {
            r.channel: RoutingRow(
                r.channel, r.baseline, r.target, r.applied, r.step, r.reason, r.changed_at, r.healthy_since,
                r.operator_hold,
            )
            for r in rows
        }

    def save_routing(
        self, rows: Iterable[RoutingRow], changes: Iterable[WeightChange] = (), sinks: Sequence[str] = ()
    ) -> None:
        """Upsert routing rows, append weight-change audit rows and queue their notifications, atomically."""
        c = t.routing_state.c
        now = self.clock.now()
        with self.engine.begin() as conn:
            for r in rows:
                values = {
                    "baseline": r.baseline, "target": r.target, "applied": r.applied, "step": r.step,
                    "reason": r.reason, "changed_at": r.changed_at, "healthy_since": r.healthy_since,
                    "operator_hold": r.operator_hold,
                }
                if conn.execute(update(t.routing_state).where(c.channel == r.channel).values(**values)).rowcount == 0:
                    conn.execute(insert(t.routing_state).values(channel=r.channel, **values))
            for ch in changes:
                conn.execute(
                    insert(t.weight_changes).values(
                        channel=ch.channel, old=ch.old, new=ch.new, reason=ch.reason, rule=ch.rule, actor=ch.actor,
                        at=ch.at,
                    )
                )
                for sink in sinks:
                    self._enqueue(conn, sink, f"weight|{ch.channel}|{ch.at.isoformat()}|{ch.new}",
                                  weight_payload(ch), now)

    def mark_applied(self, channel: str, weight: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.routing_state).where(t.routing_state.c.channel == channel).values(applied=weight))

    def weight_history(
        self, *, channel: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[WeightChange]:
        """Audited weight changes, newest first."""
        w = t.weight_changes
        q = select(w).order_by(w.c.at.desc(), w.c.id.desc()).limit(limit)
        if channel is not None:
            q = q.where(w.c.channel == channel)
        if since is not None:
            q = q.where(w.c.at >= since)
        with self.engine.connect() as conn:
            return [WeightChange(r.channel, r.old, r.new, r.reason, r.at, r.rule, r.actor) for r in conn.execute(q)]

    # -- retention ---------------------------------------------------------------------------------------

    def prune(self, *, probes: timedelta, orders: timedelta) -> tuple[int, int]:
        """Delete probe results and orders older than their retention; returns the two row counts."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            p = conn.execute(delete(t.probe_results).where(t.probe_results.c.started_at < now - probes)).rowcount
            o = conn.execute(delete(t.orders).where(t.orders.c.updated_at < now - orders)).rowcount
        return int(p), int(o)


def alert_payload(e: AlertEvent) -> dict[str, Any]:
    """The JSON stored in the outbox for an alert event."""
    return {
        "type": "alert",
        "kind": e.kind,
        "rule": e.rule,
        "channel": e.channel,
        "severity": e.severity,
        "at": e.at.isoformat(),
        "value": e.value,
        "threshold": e.threshold,
        "signal": e.signal,
        "summary": e.summary,
        "actions": list(e.actions),
    }


def weight_payload(ch: WeightChange) -> dict[str, Any]:
    """The JSON stored in the outbox for a weight change."""
    return {
        "type": "weight",
        "channel": ch.channel,
        "old": ch.old,
        "new": ch.new,
        "reason": ch.reason,
        "rule": ch.rule,
        "actor": ch.actor,
        "at": ch.at.isoformat(),
    }


def orders_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Order rows → DataFrame with ``datetime64[us, UTC]`` lifecycle columns (empty frame keeps the columns)."""
    columns = ["order_id", "channel", "method", "amount", "trade_no", *ORDER_COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    for col in ORDER_COLUMNS:
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[us, UTC]")
    return df


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _sqlite_time(value: datetime) -> str:
    """What ``UTCDateTime`` stores in SQLite: naive UTC text with microseconds, as SQLAlchemy formats it."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass aware UTC times")
    return (value - _EPOCH + _NAIVE_EPOCH).isoformat(" ", "microseconds")


def _stored_time(conn: Connection) -> Callable[[datetime], Any]:
    """Aware time → the value ``UTCDateTime`` hands this database's driver (and the driver hands back)."""
    if conn.dialect.name == "sqlite":
        return _sqlite_time  # the same text as the type's own processor (a test checks), in a third of the time
    process = t.orders.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert process is not None  # UTCDateTime always has one
    return process


def _placeholders(conn: Connection, n: int) -> str:
    return ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * n)


def _stored_orders(conn: Connection, ids: Sequence[str]) -> dict[str, list[Any]]:
    """The rows of those of ``ids`` that exist, as ``_ROW_COLUMNS`` lists of driver values."""
    rows: dict[str, list[Any]] = {}
    columns = ", ".join(_ROW_COLUMNS)
    for chunk in _chunks(ids, 500):
        sql = f"SELECT order_id, {columns} FROM {t.orders.name} WHERE order_id IN ({_placeholders(conn, len(chunk))})"
        for r in conn.exec_driver_sql(sql, tuple(chunk)):
            rows[r[0]] = list(r[1:])
    return rows


def _upsert_sql(conn: Connection) -> str:
    """INSERT of whole order rows that, for an order already there, keeps the earliest time per lifecycle column
    and the first non-empty ``method``/``amount``/``trade_no`` (what :func:`merge_event` does), in SQL."""
    names = ("order_id", *_ROW_COLUMNS, "updated_at")
    sql = f"INSERT INTO {t.orders.name} ({', '.join(names)}) VALUES ({_placeholders(conn, len(names))})"
    if conn.dialect.name in ("mysql", "mariadb"):
        sql += " ON DUPLICATE KEY UPDATE "
        old, new = "{c}", "VALUES({c})"  # a bare column is the stored value; none is assigned before it is read
    else:
        sql += " ON CONFLICT (order_id) DO UPDATE SET "
        old, new = t.orders.name + ".{c}", "excluded.{c}"
    first = "{c} = CASE WHEN {old} IS NULL OR {old} = '' THEN {new} ELSE {old} END"
    earliest = "{c} = CASE WHEN {old} IS NULL OR {new} < {old} THEN {new} ELSE {old} END"
    sets = [first.format(c=c, old=old.format(c=c), new=new.format(c=c)) for c in ("method", "amount", "trade_no")]
    sets += [earliest.format(c=c, old=old.format(c=c), new=new.format(c=c)) for c in ORDER_COLUMNS]
    sets.append("updated_at = " + new.format(c="updated_at"))
    return sql + ", ".join(sets)


def _probe(m: Any) -> ProbeResult:
    return ProbeResult(m["channel"], m["probe"], m["outcome"], m["latency_s"], m["started_at"], m["detail"], m["code"],
                       m["value"])


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _safe(exc: BaseException) -> str:
    """The first line of a driver error, without the SQL parameters (which could carry anything)."""
    return str(getattr(exc, "orig", exc)).splitlines()[0][:300] if str(exc) else ""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
