"""Orders and ingest checkpoints: each order's lifecycle as one row, merged from the shop's events.

Ingested events and the source checkpoint commit together, so a crash between reading and committing re-reads the
same lines, and the per-order merge makes the re-read a no-op (nothing lost, nothing doubled). The merge keeps the
earliest time per lifecycle column, so replaying any event, in any order, any number of times, converges on the
same row; :func:`merge_event` states the rule on one row, and ``apply_events`` does the same for a batch in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, or_, select, update

from monitor.models import Checkpoint, IngestResult, OrderEvent
from monitor.store import tables as t
from monitor.store.facet import Facet

__all__ = ["ORDER_COLUMNS", "OrdersFacet", "merge_event", "orders_to_frame"]

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


class OrdersFacet(Facet):
    """Merging order events (with the source checkpoint) and reading orders back as a frame."""

    def checkpoint(self, source: str) -> Checkpoint | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.ingest_checkpoints).where(t.ingest_checkpoints.c.source == source)).first()
        return None if r is None else Checkpoint(r.source, r.file_id, r.position, r.fingerprint,
                                                 r.fingerprint_size or 0)

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
        values = {"file_id": cp.file_id, "position": cp.position, "updated_at": now, "fingerprint": cp.fingerprint,
                  "fingerprint_size": None if cp.fingerprint is None else cp.fingerprint_size}
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


#: Time columns the frame carries besides the lifecycle ones: when paymon learned from an order query that the
#: channel was paid, the channel giving no pay time (the statistics' last fallback for "paid at the channel").
FRAME_TIMES: tuple[str, ...] = (*ORDER_COLUMNS, "paid_learned_at")


def orders_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Order rows → DataFrame with ``datetime64[us, UTC]`` time columns (:data:`FRAME_TIMES`; a key missing from
    the rows is NaT; an empty frame keeps the columns)."""
    columns = ["order_id", "channel", "method", "amount", "trade_no", *FRAME_TIMES]
    df = pd.DataFrame(rows, columns=columns)
    for col in FRAME_TIMES:
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


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
