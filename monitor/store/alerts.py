"""Alert state, alert history and silences.

A changed alert state, its history rows and its notifications (the outbox) commit together, so a restart neither
re-sends a notification nor forgets one. Silences are written by people (CLI, bot) and read by every cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from monitor.models import AlertEvent, AlertState, Silence
from monitor.store import tables as t
from monitor.store.facet import Facet
from monitor.store.outbox import enqueue

__all__ = ["AlertsFacet", "alert_payload"]


class AlertsFacet(Facet):
    """Where each (rule, channel) stands, what happened to it, and who muted what."""

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
                    enqueue(conn, sink, e.key, alert_payload(e), now)

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


def alert_payload(e: AlertEvent) -> dict[str, Any]:
    """The JSON stored in the outbox for an alert event (with ``probes``, newest first, when the event has them)."""
    payload: dict[str, Any] = {
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
    if e.probes:
        payload["probes"] = [{"outcome": outcome, "detail": detail} for outcome, detail in e.probes]
    return payload
