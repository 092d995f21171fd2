"""The alert lifecycle of one (rule, channel) pair: inactive → pending (``for``) → firing → resolved. Pure.

``step`` takes the previous state, the signal value and ``now`` and returns the next state plus the events to
announce. The invariants (checked by property tests): a pair never announces "firing" twice without a
"resolved" in between, and every "resolved" follows a "firing".

- ``value is None`` (no data, volume gate not met) gives no verdict: a pending alert falls back to inactive,
  a firing alert stays firing (silence is not recovery).
- Hysteresis: a firing alert resolves only when the value is on the healthy side of ``recover`` (or of
  ``threshold`` when no ``recover`` is set).
- Reminders: while firing, every ``repeat`` since the last notification, at most ``max_reminders`` times.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.models import AlertEvent, AlertState

__all__ = ["OPS", "RuleSpec", "make_event", "step"]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """The parts of a configured rule the lifecycle needs."""

    name: str
    signal: str
    op: str
    threshold: float
    severity: str = "warning"
    recover: float | None = None
    for_: timedelta = timedelta(0)
    repeat: timedelta = timedelta(hours=1)
    max_reminders: int | None = None
    actions: tuple[str, ...] = ("notify",)


def make_event(kind: str, spec: RuleSpec, channel: str, now: datetime, value: float | None) -> AlertEvent:
    return AlertEvent(
        kind=kind,  # type: ignore[arg-type]
        rule=spec.name,
        channel=channel,
        severity=spec.severity,
        at=now,
        value=value,
        threshold=spec.threshold,
        signal=spec.signal,
        summary=f"{spec.signal} = {_fmt(value)} ({spec.op} {_fmt(spec.threshold)})",
        actions=spec.actions,
    )


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


def step(prev: AlertState, spec: RuleSpec, value: float | None, now: datetime) -> tuple[AlertState, list[AlertEvent]]:
    """Advance one (rule, channel) by one evaluation."""
    bad = value is not None and OPS[spec.op](value, spec.threshold)
    channel = prev.channel
    if prev.state == "firing":
        recovered = value is not None and not OPS[spec.op](value, spec.recover if spec.recover is not None
                                                            else spec.threshold)
        if recovered:
            return AlertState(spec.name, channel, "inactive", value=value), [
                make_event("resolved", spec, channel, now, value)
            ]
        last = prev.last_notified_at or prev.fired_at or now
        under_cap = spec.max_reminders is None or prev.reminders < spec.max_reminders
        if now - last >= spec.repeat and under_cap:
            state = replace(prev, last_notified_at=now, reminders=prev.reminders + 1,
                            value=value if value is not None else prev.value)
            return state, [make_event("reminder", spec, channel, now, state.value)]
        return replace(prev, value=value if value is not None else prev.value), []
    if not bad:
        return AlertState(spec.name, channel, "inactive", value=value), []
    since = prev.pending_since if prev.state == "pending" and prev.pending_since is not None else now
    if now - since >= spec.for_:
        state = AlertState(spec.name, channel, "firing", pending_since=since, fired_at=now, last_notified_at=now,
                           reminders=0, value=value)
        return state, [make_event("firing", spec, channel, now, value)]
    return AlertState(spec.name, channel, "pending", pending_since=since, value=value), []
