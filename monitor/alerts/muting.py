"""Which alert events are announced, and which are only recorded: silences, inhibition, rules without ``notify``.
Pure.

An alert is *announced* when its "firing" notification went out; ``AlertState.last_notified_at is None`` on a
firing alert means it is firing unannounced. The rules that keep what operators receive consistent:

- a muted "firing" (silenced, inhibited by another rule firing on the same channel, or a rule with no ``notify``
  action) is recorded but not sent, and leaves the alert unannounced;
- while an alert is unannounced its reminders are not sent either;
- when it stops being muted and still fires, it is announced then (a late "firing");
- its "resolved" is sent only if its "firing" was: an operator never gets a "resolved" for something they were
  never told about, and never misses the "resolved" of something they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor.alerts.lifecycle import RuleSpec, make_event
from monitor.models import AlertEvent, AlertState

__all__ = ["Routed", "inhibited_by", "route"]

Key = tuple[str, str]


@dataclass
class Routed:
    """``loud`` events go to the sinks, ``quiet`` ones only to history; ``states`` are the corrected states."""

    loud: list[AlertEvent] = field(default_factory=list)
    quiet: list[AlertEvent] = field(default_factory=list)
    states: dict[Key, AlertState] = field(default_factory=dict)


def inhibited_by(inhibits: Mapping[str, Iterable[str]], states: Mapping[Key, AlertState]) -> set[Key]:
    """(rule, channel) pairs muted because a rule that inhibits them fires on the same channel."""
    out: set[Key] = set()
    for (rule, channel), state in states.items():
        if state.state == "firing":
            out.update((target, channel) for target in inhibits.get(rule, ()))
    return out


def route(
    events: Iterable[AlertEvent],
    prev: Mapping[Key, AlertState],
    current: Mapping[Key, AlertState],
    *,
    muted: Callable[[str, str], bool],
    announce: set[str],
    specs: Mapping[str, RuleSpec],
    now: datetime,
) -> Routed:
    """Split this cycle's events into announced and recorded, and announce late what is no longer muted."""
    out = Routed(states=dict(current))
    for e in events:
        key = (e.rule, e.channel)
        before = prev.get(key)
        announced_before = before is not None and before.state == "firing" and before.last_notified_at is not None
        if e.kind == "resolved":
            (out.loud if announced_before else out.quiet).append(e)
            continue
        silent = e.rule not in announce or muted(e.rule, e.channel)
        if e.kind == "reminder" and not announced_before:
            silent = True
        if not silent:
            out.loud.append(e)
            continue
        out.quiet.append(e)
        if e.kind == "firing" or not announced_before:
            state = out.states[key]
            out.states[key] = replace(state, last_notified_at=None,
                                      reminders=before.reminders if before is not None else 0)
    sent = {(e.rule, e.channel) for e in out.loud}
    for key, state in list(out.states.items()):
        rule, channel = key
        if (key in sent or state.state != "firing" or state.last_notified_at is not None
                or rule not in announce or muted(rule, channel) or rule not in specs):
            continue
        late = make_event("firing", specs[rule], channel, now, state.value)
        out.loud.append(late)
        out.states[key] = replace(state, last_notified_at=now)
    return out
