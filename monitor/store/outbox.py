"""The notification outbox: one row per (notification, sink), queued in the same transaction as the decision it
announces, and delivered (or given up on) later by ``monitor.alerts.dispatch``.

Because the row commits with its decision and carries a dedupe key, a restart neither re-sends a notification
nor forgets one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from monitor.models import OutboxItem
from monitor.store import tables as t
from monitor.store.facet import Facet

__all__ = ["OutboxFacet", "enqueue"]


def enqueue(conn: Connection, sink: str, key: str, payload: dict[str, Any], now: datetime) -> bool:
    """Queue ``payload`` for ``sink`` in the caller's transaction, once per ``key``; False if it was queued before."""
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


class OutboxFacet(Facet):
    """Reading the queue and recording each delivery attempt."""

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

    def next_in_order(self, sink: str) -> OutboxItem | None:
        """The oldest undelivered item of ``sink`` if its attempt is due; None when the queue is empty or its head
        waits for a retry. For sinks that must receive items in order: nothing behind the head is handed out."""
        o = t.outbox.c
        head = select(func.min(o.id)).where(o.sink == sink, o.sent_at.is_(None), o.failed_at.is_(None))
        q = select(t.outbox).where(o.id == head.scalar_subquery(), o.next_attempt_at <= self.clock.now())
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return None if r is None else OutboxItem(r.id, r.sink, json.loads(r.payload), r.attempts, r.created_at)

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
