"""What the routing stage remembers about its sinks: the weight a write-only sink confirmed, the shop gateways
paymon closed itself, and the one notification that a sink waits before it applies a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from monitor.store import tables as t
from monitor.store.facet import Facet
from monitor.store.outbox import enqueue

__all__ = ["SinkStateFacet"]


def _short(sink: str, size: int = 200) -> str:
    """A sink's key as stored: itself when it fits the column, else its head and a digest of the whole."""
    if len(sink) <= size:
        return sink
    return sink[: size - 17] + "#" + hashlib.sha256(sink.encode()).hexdigest()[:16]


class SinkStateFacet(Facet):
    """``routing_sink_weights``, ``routing_closed`` and the sink-waiting notifications."""

    def sink_weights(self, sink: str) -> dict[str, int]:
        """The weight ``sink`` last confirmed, by channel."""
        s = t.routing_sink_weights.c
        sink = _short(sink)
        with self.engine.connect() as conn:
            return {r.channel: r.weight for r in conn.execute(select(s.channel, s.weight).where(s.sink == sink))}

    def confirm_sink(self, sink: str, weights: Mapping[str, int]) -> None:
        """Record that ``sink`` holds ``weights`` (channels it waits for are left out by the caller)."""
        s = t.routing_sink_weights.c
        sink = _short(sink)
        with self.engine.begin() as conn:
            for channel, weight in weights.items():
                q = update(t.routing_sink_weights).where(s.sink == sink, s.channel == channel).values(weight=weight)
                if conn.execute(q).rowcount == 0:
                    conn.execute(insert(t.routing_sink_weights).values(sink=sink, channel=channel, weight=weight))

    def closed_by_paymon(self, sink: str) -> dict[int, str]:
        """The shop rows (gateways) paymon closed through ``sink``: row id -> channel."""
        c = t.routing_closed.c
        sink = _short(sink)
        with self.engine.connect() as conn:
            return {r.row_id: r.channel for r in conn.execute(select(c.row_id, c.channel).where(c.sink == sink))}

    def remember_closed(self, sink: str, rows: Mapping[int, str], at: datetime) -> None:
        """Before closing them: these rows are about to be closed by paymon (so paymon may open them again)."""
        known = self.closed_by_paymon(sink)
        sink = _short(sink)
        with self.engine.begin() as conn:
            for row_id, channel in rows.items():
                if row_id not in known:
                    conn.execute(insert(t.routing_closed).values(sink=sink, row_id=row_id, channel=channel,
                                                                 closed_at=at))

    def forget_closed(self, sink: str, rows: Iterable[int]) -> None:
        """After reopening them (or the operator did): these rows are no longer paymon's to open."""
        ids = list(rows)
        if not ids:
            return
        c = t.routing_closed.c
        sink = _short(sink)
        with self.engine.begin() as conn:
            conn.execute(delete(t.routing_closed).where(c.sink == sink, c.row_id.in_(ids)))

    def note_sink_waiting(self, sink: str, channel: str, target: int, since: datetime, reason: str,
                          notify: Sequence[str], now: datetime) -> bool:
        """Queue "``sink`` waits before applying ``target`` to ``channel``" once per change (``since`` is when
        the target was decided); False when it was queued before."""
        payload = {"type": "sink_waiting", "channel": channel, "sink": sink, "target": target, "reason": reason,
                   "at": now.isoformat()}
        key = f"sink_waiting|{_short(sink, 120)}|{channel}|{since.isoformat()}|{target}"
        queued = False
        with self.engine.begin() as conn:
            for name in notify:
                queued = enqueue(conn, name, key, payload, now) or queued
        return queued
