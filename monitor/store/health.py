"""The daemon's own health in the store: whether its evaluation cycles fail, since when and why.

One row (``daemon_health``, id 1). The daemon records every cycle's outcome here; the change from succeeding to
failing (and back) queues one notification per sink in the same transaction, so the operator hears of it once,
and a restart neither repeats nor forgets it. ``/healthz``, ``paymon status`` and a restarted daemon read it with
:func:`read_health`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from monitor.store import tables as t
from monitor.store.outbox import enqueue
from monitor.store.store import Store

__all__ = ["REASON_LIMIT", "DaemonHealth", "read_health", "record_failure", "record_success"]

#: The longest reason kept and shown (``/healthz`` answers at most this many characters).
REASON_LIMIT = 500
_ROW = 1


@dataclass(frozen=True)
class DaemonHealth:
    """The evaluation cycles' health: ``failing_since`` is None while they succeed."""

    failing_since: datetime | None = None
    reason: str | None = None
    failures: int = 0
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def describe(self) -> str:
        """One line for ``/healthz`` and ``paymon status``: ``evaluation cycles failing since <time>: <reason>``
        (at most :data:`REASON_LIMIT` characters), or ``ok``."""
        if self.failing_since is None:
            return "ok"
        text = f"evaluation cycles failing since {self.failing_since.isoformat(timespec='seconds')}: {self.reason}"
        return text if len(text) <= REASON_LIMIT else text[:REASON_LIMIT - 1] + "…"


def read_health(store: Store) -> DaemonHealth:
    """What the store knows of the evaluation cycles (a store no daemon has written yet: healthy)."""
    h = t.daemon_health
    with store.engine.connect() as conn:
        row = conn.execute(select(h).where(h.c.id == _ROW)).first()
    if row is None:
        return DaemonHealth()
    return DaemonHealth(row.failing_since, row.reason, row.failures, row.last_failure_at, row.last_success_at)


def record_failure(store: Store, reason: str, *, now: datetime, sinks: Sequence[str]) -> bool:
    """Record a failed cycle (``reason`` already free of secrets); the first of a streak queues one
    ``evaluation_failing`` notification per sink. True when this failure started the streak."""
    h = t.daemon_health
    reason = reason[:REASON_LIMIT]
    with store.engine.begin() as conn:
        row = _row(conn)
        started = row.failing_since is None
        since = now if started else row.failing_since
        conn.execute(update(h).where(h.c.id == _ROW).values(
            failing_since=since, reason=reason, failures=row.failures + 1, last_failure_at=now))
        if started:
            payload = _payload("evaluation_failing", now, since, reason, 1)
            for sink in sinks:
                enqueue(conn, sink, f"health|failing|{since.isoformat()}", payload, now)
    return started


def record_success(store: Store, *, now: datetime, sinks: Sequence[str]) -> bool:
    """Record a successful cycle; the first after failures queues one ``recovered`` notification per sink. True
    when this cycle ended a failing streak."""
    h = t.daemon_health
    with store.engine.begin() as conn:
        row = _row(conn)
        conn.execute(update(h).where(h.c.id == _ROW).values(failing_since=None, failures=0, last_success_at=now))
        if row.failing_since is None:
            return False
        payload = _payload("recovered", now, row.failing_since, row.reason or "", row.failures)
        for sink in sinks:
            enqueue(conn, sink, f"health|recovered|{row.failing_since.isoformat()}", payload, now)
    return True


def _row(conn: Connection) -> Any:
    """The health row, created (healthy) on first use."""
    h = t.daemon_health
    row = conn.execute(select(h).where(h.c.id == _ROW)).first()
    if row is None:
        conn.execute(insert(h).values(id=_ROW, failures=0))
        row = conn.execute(select(h).where(h.c.id == _ROW)).one()
    return row


def _payload(kind: str, now: datetime, since: datetime, reason: str, failures: int) -> dict[str, Any]:
    return {"type": "health", "kind": kind, "channel": "", "at": now.isoformat(), "since": since.isoformat(),
            "reason": reason, "failures": failures}
