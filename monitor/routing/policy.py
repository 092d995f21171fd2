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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitor.models import WeightChange
from monitor.store.store import RoutingRow

__all__ = ["ChannelRouting", "Decision", "RestorePolicy", "Wish", "decide"]


@dataclass(frozen=True, slots=True)
class RestorePolicy:
    steps: tuple[float, ...] = (0.25, 0.5, 1.0)
    every: timedelta = timedelta(minutes=5)
    healthy_for: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class ChannelRouting:
    """A channel as routing sees it: its weight in the shared file now, and the payment methods it serves."""

    id: str
    file_weight: int
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Wish:
    """A firing rule asks for ``factor`` × baseline on ``channel`` (0 = drain)."""

    channel: str
    rule: str
    factor: float
    #: Why, in words, when it is not a rule (a maintenance window).
    reason: str | None = None


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
    by_channel: dict[str, Wish] = {}
    for w in wishes:
        if w.channel not in by_channel or w.factor < by_channel[w.channel].factor:
            by_channel[w.channel] = w
    out: dict[str, RoutingRow] = {}
    changes: list[WeightChange] = []
    held: list[str] = []

    # 1. Adopt operator edits and make sure every channel has a row.
    for ch in channels:
        row = rows.get(ch.id)
        if row is None:
            row = RoutingRow(ch.id, ch.file_weight, ch.file_weight, ch.file_weight, 0, "", now)
        elif row.applied != ch.file_weight and ch.file_weight == row.target:
            row = replace(row, applied=row.target)  # our last write landed; only its bookkeeping was lost
        elif row.applied is not None and ch.file_weight != row.applied:
            changes.append(WeightChange(ch.id, row.applied, ch.file_weight, "edited in the shared config",
                                        now, None, "operator"))
            row = RoutingRow(ch.id, ch.file_weight, ch.file_weight, ch.file_weight, 0, "operator edit", now,
                             operator_hold=ch.id in by_channel)
        out[ch.id] = row

    active = {ch.id: out[ch.id].target > 0 for ch in channels}
    lowering_budget = max(0, max_changes_per_hour - changes_last_hour)

    for ch in channels:
        row = out[ch.id]
        wish = by_channel.get(ch.id)
        if wish is not None and row.operator_hold:
            held.append(f"{ch.id}: weight {row.target} was set by hand while {wish.rule} fires; left alone")
            continue
        if wish is not None:
            want = int(round(row.baseline * wish.factor))
            if want >= row.target:
                out[ch.id] = replace(row, healthy_since=None)
                continue
            if want == 0:
                short = [m for m in ch.methods
                         if sum(1 for o in channels if o.id != ch.id and active[o.id] and m in o.methods)
                         < min_active_per_method]
                if short:
                    held.append(f"{ch.id}: not drained, it is the last active channel for {', '.join(short)}")
                    out[ch.id] = replace(row, healthy_since=None)
                    continue
            if lowering_budget <= 0:
                held.append(f"{ch.id}: not lowered, max_changes_per_hour ({max_changes_per_hour}) reached")
                out[ch.id] = replace(row, healthy_since=None)
                continue
            lowering_budget -= 1
            reason = wish.reason or (
                f"rule {wish.rule}: " + ("drain" if want == 0 else f"reduce to {wish.factor:g}× baseline"))
            changes.append(WeightChange(ch.id, row.target, want, reason, now, wish.rule))
            out[ch.id] = replace(row, target=want, step=0, reason=reason, changed_at=now, healthy_since=None)
            active[ch.id] = want > 0
            continue
        # No wish: restore step by step towards the baseline.
        if row.operator_hold:
            row = replace(row, operator_hold=False)
        if row.target >= row.baseline:
            out[ch.id] = replace(row, healthy_since=None, step=0) if row.healthy_since or row.step else row
            continue
        healthy_since = row.healthy_since or now
        row = replace(row, healthy_since=healthy_since)
        due = now - healthy_since >= restore.healthy_for and (row.step == 0 or now - row.changed_at >= restore.every)
        if due:
            nxt = row.step
            want = row.target
            while nxt < len(restore.steps) and want <= row.target:
                want = int(round(row.baseline * restore.steps[nxt]))
                nxt += 1
            want = min(max(want, row.target), row.baseline)
            reason = f"restore step {nxt}/{len(restore.steps)}"
            changes.append(WeightChange(ch.id, row.target, want, reason, now))
            row = replace(row, target=want, step=nxt if want < row.baseline else 0, reason=reason, changed_at=now)
            active[ch.id] = want > 0
        out[ch.id] = row
    return Decision(out, changes, held)
