"""Routing policy: from what fires to the weight each channel should have. Pure: no I/O, ``now`` given.

- A firing alert whose rule has the ``drain`` action wants weight 0; ``reduce_weight: f`` wants ``baseline × f``.
  The lowest wish wins. Lowering happens at once.
- Once a channel has nothing firing with a weight action, it is restored in steps (``restore.steps`` of the
  baseline): the first after it has been healthy for ``healthy_for``, each next one ``every`` later.
- ``baseline`` is the operator's weight. When the weight in the shared file differs from the last weight paymon
  wrote, the operator changed it: paymon adopts it as the new baseline and never overwrites it silently. An edit
  made while alerts fire on the channel is an override: paymon leaves that weight alone until those alerts
  resolve (``operator_hold``).
- Guards: no change leaves a payment method with fewer than ``min_active_per_method`` channels of weight > 0,
  and at most ``max_changes_per_hour`` lowering changes are made (restores are always allowed: they only help).
- Exploration (``restore.explore``, a share of the baseline): the restore's first step is that share, a trickle
  of real orders. A drained channel whose probes pass and on which only rules judged on orders still fire (a
  ``success_ratio`` alert cannot resolve without orders) gets the trickle after ``healthy_for`` and keeps it
  until those rules resolve on the trickle's orders; the restore then goes on. Failing probes: no trickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitor.models import RoutingRow, WeightChange

__all__ = ["EXPLORE", "ChannelRouting", "Decision", "RestorePolicy", "Wish", "adopt", "decide", "next_restore"]

#: How the reason of an exploration step begins.
EXPLORE = "explore"


@dataclass(frozen=True, slots=True)
class RestorePolicy:
    steps: tuple[float, ...] = (0.25, 0.5, 1.0)
    every: timedelta = timedelta(minutes=5)
    healthy_for: timedelta = timedelta(minutes=10)
    #: The exploration share of the baseline (the restore's first step), or None: no exploration.
    explore: float | None = None

    def trickle(self, baseline: int) -> int:
        """The exploration step's weight for ``baseline`` (at least 1), or 0 without exploration."""
        return max(1, int(round(baseline * self.explore))) if self.explore is not None and baseline > 0 else 0


@dataclass(frozen=True, slots=True)
class ChannelRouting:
    """A channel as routing sees it: its weight in the shared file now, the payment methods it serves, and
    whether its probes pass now (``monitor.alerts.recovery.probes_pass``)."""

    id: str
    file_weight: int
    methods: tuple[str, ...] = ()
    probes_ok: bool = False


@dataclass(frozen=True, slots=True)
class Wish:
    """A firing rule asks for ``factor`` × baseline on ``channel`` (0 = drain)."""

    channel: str
    rule: str
    factor: float
    #: Why, in words, when it is not a rule (a maintenance window).
    reason: str | None = None
    #: The rule judges orders (``success_ratio``): on a drained channel it can only resolve on a trickle of them.
    by_orders: bool = False


@dataclass(frozen=True)
class Decision:
    """The new routing rows, the audited changes, and guard messages (why something was not done)."""

    rows: dict[str, RoutingRow]
    changes: list[WeightChange] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def decide(
    channels: Sequence[ChannelRouting],
    rows: Mapping[str, RoutingRow],
    wishes: Iterable[Wish],
    *,
    now: datetime,
    restore: RestorePolicy,
    min_active_per_method: int = 1,
    max_changes_per_hour: int = 6,
    changes_last_hour: int = 0,
) -> Decision:
    """Compute every channel's target weight for this cycle."""
    wishes = list(wishes)
    wished = _strongest(wishes)
    on_orders_only = {ch for ch in wished if all(w.by_orders for w in wishes if w.channel == ch)}
    changes: list[WeightChange] = []
    # 1. Adopt operator edits and make sure every channel has a row.
    out = {ch.id: _adopt(ch, rows.get(ch.id), ch.id in wished, now, changes) for ch in channels}
    # 2. Lower where a rule wishes it (guards permitting), restore step by step where none does.
    cycle = _Cycle(
        channels, now, min_active_per_method, max_changes_per_hour,
        budget=max(0, max_changes_per_hour - changes_last_hour),
        active={ch.id: out[ch.id].target > 0 for ch in channels}, changes=changes,
    )
    for ch in channels:
        wish = wished.get(ch.id)
        row = out[ch.id]
        if wish is None:
            out[ch.id] = _restore(ch, row, restore, cycle)
        elif (ch.id in on_orders_only and ch.probes_ok and not row.operator_hold
              and row.target <= restore.trickle(row.baseline) < row.baseline):
            out[ch.id] = _explore(ch, row, restore, cycle)
        else:
            out[ch.id] = _lower(ch, row, wish, cycle)
    return Decision(out, cycle.changes, cycle.held)


@dataclass
class _Cycle:
    """What one :func:`decide` call carries from channel to channel: which channels are active now, how many
    lowering changes are still allowed, and the changes and guard messages so far."""

    channels: Sequence[ChannelRouting]
    now: datetime
    min_active_per_method: int
    max_changes_per_hour: int
    budget: int
    active: dict[str, bool]
    changes: list[WeightChange]
    held: list[str] = field(default_factory=list)


def _strongest(wishes: Iterable[Wish]) -> dict[str, Wish]:
    """The lowest wish per channel (the first of equals)."""
    by_channel: dict[str, Wish] = {}
    for w in wishes:
        if w.channel not in by_channel or w.factor < by_channel[w.channel].factor:
            by_channel[w.channel] = w
    return by_channel


def _adopt(ch: ChannelRouting, row: RoutingRow | None, wished: bool, now: datetime,
           changes: list[WeightChange]) -> RoutingRow:
    """The channel's row with the shared file taken into account: a new row for a new channel, an operator's edit
    adopted as the baseline (held while a rule ``wished`` it lower), our own lost bookkeeping healed."""
    if row is None:
        return RoutingRow(ch.id, ch.file_weight, ch.file_weight, ch.file_weight, 0, "", now)
    if row.applied != ch.file_weight and ch.file_weight == row.target:
        return replace(row, applied=row.target)  # our last write landed; only its bookkeeping was lost
    if row.applied is not None and ch.file_weight != row.applied:
        changes.append(WeightChange(ch.id, row.applied, ch.file_weight, "edited in the shared config",
                                    now, None, "operator"))
        return RoutingRow(ch.id, ch.file_weight, ch.file_weight, ch.file_weight, 0, "operator edit", now,
                          operator_hold=wished)
    return row


def _lower(ch: ChannelRouting, row: RoutingRow, wish: Wish, cycle: _Cycle) -> RoutingRow:
    """Follow a firing rule's wish down, unless an operator override, the last-channel guard or the hourly
    budget stops it (each says so in ``held``)."""
    if row.operator_hold:
        cycle.held.append(f"{ch.id}: weight {row.target} was set by hand while {wish.rule} fires; left alone")
        return row
    want = int(round(row.baseline * wish.factor))
    if want >= row.target:
        return replace(row, healthy_since=None)
    if want == 0:
        short = _methods_left_without(ch, cycle)
        if short:
            cycle.held.append(f"{ch.id}: not drained, it is the last active channel for {', '.join(short)}")
            return replace(row, healthy_since=None)
    if cycle.budget <= 0:
        cycle.held.append(f"{ch.id}: not lowered, max_changes_per_hour ({cycle.max_changes_per_hour}) reached")
        return replace(row, healthy_since=None)
    cycle.budget -= 1
    reason = wish.reason or (
        f"rule {wish.rule}: " + ("drain" if want == 0 else f"reduce to {wish.factor:g}× baseline"))
    cycle.changes.append(WeightChange(ch.id, row.target, want, reason, cycle.now, wish.rule))
    cycle.active[ch.id] = want > 0
    return replace(row, target=want, step=0, reason=reason, changed_at=cycle.now, healthy_since=None)


def _methods_left_without(ch: ChannelRouting, cycle: _Cycle) -> list[str]:
    """The payment methods of ``ch`` that would have fewer than ``min_active_per_method`` active channels
    without it."""
    return [m for m in ch.methods
            if sum(1 for o in cycle.channels if o.id != ch.id and cycle.active[o.id] and m in o.methods)
            < cycle.min_active_per_method]


def _restore(ch: ChannelRouting, row: RoutingRow, restore: RestorePolicy, cycle: _Cycle) -> RoutingRow:
    """No wish: end an operator hold, and restore towards the baseline step by step once healthy long enough."""
    now = cycle.now
    if row.operator_hold:
        row = replace(row, operator_hold=False)
    if row.target >= row.baseline:
        return replace(row, healthy_since=None, step=0) if row.healthy_since or row.step else row
    healthy_since = row.healthy_since or now
    row = replace(row, healthy_since=healthy_since)
    first = row.step == 0 and not row.reason.startswith(EXPLORE)
    due = now - healthy_since >= restore.healthy_for and (first or now - row.changed_at >= restore.every)
    if not due:
        return row
    if row.target < restore.trickle(row.baseline):
        return _to_trickle(ch, row, restore, cycle)
    nxt = row.step
    want = row.target
    while nxt < len(restore.steps) and want <= row.target:
        want = int(round(row.baseline * restore.steps[nxt]))
        nxt += 1
    want = min(max(want, row.target), row.baseline)
    reason = f"restore step {nxt}/{len(restore.steps)}"
    cycle.changes.append(WeightChange(ch.id, row.target, want, reason, now))
    cycle.active[ch.id] = want > 0
    return replace(row, target=want, step=nxt if want < row.baseline else 0, reason=reason, changed_at=now)


def _explore(ch: ChannelRouting, row: RoutingRow, restore: RestorePolicy, cycle: _Cycle) -> RoutingRow:
    """A drained channel whose probes pass, held down only by rules judged on orders: once healthy for
    ``healthy_for`` it gets the exploration trickle, and keeps it (no further step) while those rules fire."""
    if row.target >= restore.trickle(row.baseline):
        return row
    healthy_since = row.healthy_since or cycle.now
    row = replace(row, healthy_since=healthy_since)
    if cycle.now - healthy_since < restore.healthy_for:
        return row
    return _to_trickle(ch, row, restore, cycle)


def _to_trickle(ch: ChannelRouting, row: RoutingRow, restore: RestorePolicy, cycle: _Cycle) -> RoutingRow:
    want = restore.trickle(row.baseline)
    reason = f"{EXPLORE}: {restore.explore:g}× baseline"
    cycle.changes.append(WeightChange(ch.id, row.target, want, reason, cycle.now))
    cycle.active[ch.id] = True
    return replace(row, target=want, step=0, reason=reason, changed_at=cycle.now)


def next_restore(row: RoutingRow, restore: RestorePolicy) -> datetime | None:
    """When the next restore step is due for a channel below its baseline (the same test as the restore itself:
    healthy for ``healthy_for``, and ``every`` since the last step); None when it is at its baseline, or while
    something still holds it down (it has not started being healthy)."""
    if row.target >= row.baseline or row.healthy_since is None:
        return None
    due = row.healthy_since + restore.healthy_for
    return max(due, row.changed_at + restore.every) if row.step or row.reason.startswith(EXPLORE) else due


def adopt(ch: ChannelRouting, row: RoutingRow | None, *, wished: bool,
          now: datetime) -> tuple[RoutingRow, list[WeightChange]]:
    """A channel's row with the shared file taken into account, as :func:`decide` sees it first (an operator's
    edit adopted as the baseline, lost bookkeeping healed), and the audited edit if there was one. For callers
    that change one row by hand (``paymon weights``) and must start from the same view as the policy."""
    changes: list[WeightChange] = []
    return _adopt(ch, row, wished, now, changes), changes
