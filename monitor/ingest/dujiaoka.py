"""The ``dujiaoka`` source: reads dujiaoka's own ``orders`` table, read-only.

dujiaoka's ``orders`` has no index on ``updated_at``, so every read goes by primary key:

* **new rows**: ``id > last_id`` in primary-key order, ``batch`` rows at a time; each batch commits its events
  together with the checkpoint ``Checkpoint(source_id, "orders", last_id)``;
* **changes**: each poll re-reads the id range ``(last_id - recheck_rows, last_id]`` and emits the events of rows
  whose ``(status, updated_at)`` differs from what this instance last saw (an unpaid order that got paid or
  expired, a manual order completed by the admin). This range also catches rows whose insert committed after a
  higher id had been read. After a restart nothing has been seen yet, so the first re-read emits the range
  again; the store merges by earliest time, so those come back as ``duplicate``, never as new orders.

Row → events: ``order_created`` at ``created_at``; status 2/3/4/6 (paid) → ``order_paid`` with ``trade_no`` and a
verified ``callback_received`` at ``updated_at`` (dujiaoka only completes an order on a verified notify); 4 also
``order_delivered``; -1 → ``order_expired`` at ``updated_at``; 5 (admin failure) adds nothing. ``pays.id`` maps to
the channel through ``pay_channels``; a row with an unmapped ``pay_id`` is rejected (``unknown_channel``).

Timestamps are read exactly as dujiaoka writes them: the session ``time_zone`` is left alone and the columns are
selected as text, which is Beijing wall-clock time (``Asia/Shanghai``) whatever the server's zone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.clock import Clock
from monitor.ingest.events import FUTURE_TOLERANCE, Rejected, parse_time
from monitor.models import IngestResult, OrderEvent
from monitor.store import Checkpoint, Store

__all__ = ["BEIJING", "FILE_ID", "DujiaokaSource", "DujiaokaUnavailable", "row_events"]

log = logging.getLogger(__name__)

#: dujiaoka's ``config/app.php`` timezone ``PRC``.
BEIJING = ZoneInfo("Asia/Shanghai")
#: The checkpoint's ``file_id``: the position is the last ``orders.id`` read.
FILE_ID = "orders"

#: Paid statuses: 待处理, 处理中, 已完成, 异常.
PAID = frozenset({2, 3, 4, 6})
COMPLETED = 4
EXPIRED = -1

_COLUMNS = (
    "id, order_sn, pay_id, status, trade_no, actual_price, "
    "CAST(created_at AS CHAR) AS created_at, CAST(updated_at AS CHAR) AS updated_at"
)
_NEW = text(f"SELECT {_COLUMNS} FROM orders WHERE id > :last_id AND deleted_at IS NULL ORDER BY id LIMIT :batch")
_RANGE = text(f"SELECT {_COLUMNS} FROM orders WHERE id BETWEEN :low AND :high AND deleted_at IS NULL ORDER BY id")


class DujiaokaUnavailable(ConnectionError):
    """dujiaoka's database could not be read (an ``OSError``, so the pipeline logs it and carries on)."""


def _time(value: Any, name: str) -> datetime:
    if value in (None, "", "0000-00-00 00:00:00"):
        raise Rejected(f"missing_{name}")
    return parse_time(str(value), BEIJING)


def row_events(row: Mapping[str, Any], channel: str, now: datetime) -> list[OrderEvent]:
    """The events one ``orders`` row stands for; raises :class:`Rejected` when it cannot be used. Pure."""
    order_id = str(row["order_sn"] or "")[:150]
    if not order_id:
        raise Rejected("missing_order_id")
    created = _time(row["created_at"], "created_at")
    status = int(row["status"])
    updated = _time(row["updated_at"], "updated_at") if status in PAID or status == EXPIRED else None
    if created > now + FUTURE_TOLERANCE or (updated is not None and updated > now + FUTURE_TOLERANCE):
        raise Rejected("future_timestamp")
    price = row["actual_price"]
    amount = None if price is None else Decimal(str(price))
    trade_no = str(row["trade_no"] or "")[:200] or None
    events = [OrderEvent(ts=created, event="order_created", order_id=order_id, channel=channel, amount=amount)]
    if updated is not None and status in PAID:
        events.append(OrderEvent(ts=updated, event="order_paid", order_id=order_id, channel=channel,
                                 amount=amount, trade_no=trade_no))
        events.append(OrderEvent(ts=updated, event="callback_received", order_id=order_id, channel=channel,
                                 amount=amount, trade_no=trade_no, verified=True))
        if status == COMPLETED:
            events.append(OrderEvent(ts=updated, event="order_delivered", order_id=order_id, channel=channel))
    elif updated is not None and status == EXPIRED:
        events.append(OrderEvent(ts=updated, event="order_expired", order_id=order_id, channel=channel))
    return events


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    try:
        cur.execute("SET SESSION TRANSACTION READ ONLY")
    finally:
        cur.close()


class DujiaokaSource:
    """Polls one dujiaoka database into the store. ``pay_channels`` maps ``pays.id`` → channel id."""

    kind = "dujiaoka"

    def __init__(self, *, source_id: str, url: str, pay_channels: Mapping[int, str], store: Store, clock: Clock,
                 recheck_rows: int = 5000, batch: int = 1000) -> None:
        if batch < 1 or recheck_rows < 0:
            raise ValueError("batch must be >= 1 and recheck_rows >= 0")
        self.source_id = source_id
        self._url = url
        self.pay_channels = {int(k): v for k, v in pay_channels.items()}
        self.store = store
        self.clock = clock
        self.recheck_rows = recheck_rows
        self.batch = batch
        self._engine: Engine | None = None
        #: ``orders.id`` → (status, updated_at) as last turned into events, for rows inside the re-read range.
        self._seen: dict[int, tuple[int, str | None]] = {}

    def __enter__(self) -> DujiaokaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the URL: it holds the database password
        return f"DujiaokaSource(source_id={self.source_id!r})"

    def close(self) -> None:
        """Dispose of the connection pool (a later poll opens a new one)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _db(self) -> Engine:
        if self._engine is None:
            engine = create_engine(self._url, pool_pre_ping=True, pool_recycle=3600)
            if engine.dialect.name == "mysql":
                event.listen(engine, "connect", _read_only)
            self._engine = engine
        return self._engine

    def poll(self) -> IngestResult:
        """Re-read the recent id range for changes, then ingest the new rows; returns the counts of this call."""
        cp = self.store.checkpoint(self.source_id)
        last_id = cp.position if cp is not None and cp.file_id == FILE_ID else 0
        total = IngestResult()
        try:
            if last_id > 0 and self.recheck_rows > 0:
                total += self._recheck(last_id)
            while True:
                rows = self._fetch(_NEW, {"last_id": last_id, "batch": self.batch})
                if not rows:
                    break
                result, last_id = self._commit_new(rows)
                total += result
                if len(rows) < self.batch:
                    break
        except SQLAlchemyError as exc:
            self.close()
            orig = getattr(exc, "orig", None) or exc
            detail = str(orig).splitlines()[0][:200] if str(orig) else ""
            raise DujiaokaUnavailable(f"dujiaoka database {self.source_id}: {type(orig).__name__}: {detail}") from None
        return total

    def _fetch(self, query: Any, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        with self._db().connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query, dict(params))]

    def _convert(self, rows: Iterable[dict[str, Any]], *, count_rejects: bool) -> tuple[list[OrderEvent], Counter[str]]:
        events: list[OrderEvent] = []
        reasons: Counter[str] = Counter()
        now = self.clock.now()
        for row in rows:
            row_id = int(row["id"])
            state = (int(row["status"]), None if row["updated_at"] is None else str(row["updated_at"]))
            try:
                pay_id = row["pay_id"]
                channel = self.pay_channels.get(int(pay_id)) if pay_id is not None else None
                if channel is None:
                    # Remembered, so the re-read does not count it again; a later pay_id edit is picked up.
                    self._seen[row_id] = state
                    raise Rejected("unknown_channel")
                events.extend(row_events(row, channel, now))
            except Rejected as r:
                if count_rejects:
                    reasons[r.reason] += 1
                continue
            self._seen[row_id] = state
        return events, reasons

    def _commit_new(self, rows: Sequence[dict[str, Any]]) -> tuple[IngestResult, int]:
        last_id = int(rows[-1]["id"])
        events, reasons = self._convert(rows, count_rejects=True)
        result = self.store.apply_events(
            events, checkpoint=Checkpoint(self.source_id, FILE_ID, last_id),
            rejected=sum(reasons.values()), reasons=dict(reasons),
        )
        return result, last_id

    def _recheck(self, last_id: int) -> IngestResult:
        low = max(1, last_id - self.recheck_rows + 1)
        for row_id in [i for i in self._seen if i < low]:
            del self._seen[row_id]
        rows = self._fetch(_RANGE, {"low": low, "high": last_id})
        changed = [
            r for r in rows
            if self._seen.get(int(r["id"])) != (int(r["status"]), None if r["updated_at"] is None
                                                else str(r["updated_at"]))
        ]
        if not changed:
            return IngestResult()
        # Rejections were counted when the rows were new; the re-read only retries (e.g. a future timestamp).
        events, _ = self._convert(changed, count_rejects=False)
        if not events:
            return IngestResult()
        return self.store.apply_events(events, checkpoint=Checkpoint(self.source_id, FILE_ID, last_id))
