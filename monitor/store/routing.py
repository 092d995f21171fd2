"""Routing bookkeeping: paymon's view of each channel's weight, and the audit of every weight change.

A routing row, its audit rows and their notifications commit together. The weight file is written afterwards and
``applied`` records what reached it, so a crash in between is healed on the next cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select, update

from monitor.models import RoutingRow, WeightChange
from monitor.store import tables as t
from monitor.store.facet import Facet
from monitor.store.outbox import enqueue

__all__ = ["RoutingFacet", "weight_payload"]


class RoutingFacet(Facet):
    """Routing rows (baseline, target, applied, restore step) and the weight-change audit."""

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
                    enqueue(conn, sink, f"weight|{ch.channel}|{ch.at.isoformat()}|{ch.new}", weight_payload(ch), now)

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

    def weight_change_counts(self) -> dict[tuple[str, str], int]:
        """How many audited weight changes each channel had, by kind (``CHANGE_KINDS``): the counts behind
        ``paymon_routing_changes_total``, read from the audit so they include changes other processes made."""
        w = t.weight_changes.c
        kind = case((w.actor != "paymon", "operator"), (w.new == 0, "drain"), (w.new < w.old, "reduce"),
                    else_="restore")
        q = select(w.channel, kind.label("kind"), func.count()).group_by(w.channel, kind)
        with self.engine.connect() as conn:
            return {(channel, k): n for channel, k, n in conn.execute(q)}


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
