"""Smart weights (``routing.mode: smart``): share the traffic of healthy channels by how well they do. Pure: no I/O,
``now`` given.

Among the healthy channels that serve a payment method (channels sharing a method are weighed together), each gets
a share of the group's total baseline weight proportional to its *score*: the mean of the Beta posterior of its
success ratio over the stats window (``prior`` pseudo-counts plus the decided orders) × (1 − ``fee_rate``). No
share falls below ``floor``, so a healthy channel never starves and keeps producing the orders that show it
improving. A group is changed at most every ``every``, and only when some share would move by more than
``dead_band``: small wobbles of the ratios cause no churn.

Smart works on top of the rule-driven policy (:func:`~monitor.routing.policy.decide`): drains, reductions and
stepped restores win. A channel is *healthy* here when no rule wishes it lower, no operator override holds it, its
baseline is above 0 and it is either at its baseline or already at a smart weight. The operator's baseline is kept
in the routing row; only ``target`` carries the smart weight, so a channel a rule lowers is restored to its
baseline, and switching smart off brings every channel back to its baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.models import RoutingRow, WeightChange
from monitor.routing.policy import ChannelRouting, Decision

__all__ = ["REASON", "SmartPolicy", "Tally", "is_smart", "posterior_mean", "shares", "smart_view", "smart_weights",
           "unwind"]

#: Every smart change's reason starts with this; a routing row whose reason does is at a smart weight.
REASON = "smart"


@dataclass(frozen=True, slots=True)
class SmartPolicy:
    every: timedelta = timedelta(minutes=15)
    floor: float = 0.05
    dead_band: float = 0.05
    prior: tuple[float, float] = (19.0, 1.0)


@dataclass(frozen=True, slots=True)
class Tally:
    """Decided orders of one channel over the smart window."""

    succeeded: int = 0
    failed: int = 0


def is_smart(reason: str) -> bool:
    """Whether a row's (or a change's) reason says smart weighting set it."""
    return reason == REASON or reason.startswith(REASON + ":")


def posterior_mean(tally: Tally, prior: tuple[float, float]) -> float:
    """Mean of the Beta(prior + successes, prior + failures) posterior of the success ratio."""
    a, b = prior
    return (a + tally.succeeded) / (a + b + tally.succeeded + tally.failed)


def shares(scores: Mapping[str, float], floor: float) -> dict[str, float]:
    """Shares proportional to ``scores`` (equal when all are 0), each at least ``floor``: channels that would fall
    below it are set to it and the rest is shared among the others in proportion again."""
    if not scores:
        return {}
    if floor * len(scores) >= 1:
        return {ch: 1 / len(scores) for ch in scores}
    fixed: set[str] = set()
    while True:
        free = {ch: s for ch, s in scores.items() if ch not in fixed}
        left = 1 - floor * len(fixed)
        total = sum(free.values())
        out = {ch: floor for ch in fixed}
        out.update({ch: left * (s / total if total > 0 else 1 / len(free)) for ch, s in free.items()})
        low = {ch for ch in free if out[ch] < floor}
        if not low:
            return out
        fixed |= low


def smart_view(rows: Mapping[str, RoutingRow]) -> dict[str, RoutingRow]:
    """The rows as the rule-driven policy should see them: a row at a smart weight counts as at its baseline (so
    it is not "restored" back, and a reduction is a fraction of what the channel has now)."""
    return {ch: replace(r, baseline=r.target) if is_smart(r.reason) and r.target > 0 else r for ch, r in rows.items()}


def _groups(channels: Sequence[ChannelRouting]) -> list[list[ChannelRouting]]:
    """Channels that share a payment method, transitively (channels listing none form one group)."""
    groups: list[tuple[set[str], list[ChannelRouting]]] = []
    for ch in channels:
        methods = set(ch.methods) or {""}
        joined = [g for g in groups if g[0] & methods]
        merged: tuple[set[str], list[ChannelRouting]] = (methods, [ch])
        for g in joined:
            groups.remove(g)
            merged = (merged[0] | g[0], g[1] + merged[1])
        groups.append(merged)
    return [members for _, members in groups]


def smart_weights(channels: Sequence[ChannelRouting], rows: Mapping[str, RoutingRow], decision: Decision,
                  wished: set[str], tallies: Mapping[str, Tally], fees: Mapping[str, float], policy: SmartPolicy,
                  *, now: datetime) -> Decision:
    """``decision`` (from :func:`~monitor.routing.policy.decide` on :func:`smart_view` rows) with the operator's
    baselines put back (``rows`` are the stored ones) and the healthy channels' smart weights applied."""
    adopted = {c.channel for c in decision.changes if c.actor == "operator"}
    out = {ch: r if ch in adopted or ch not in rows else replace(r, baseline=rows[ch].baseline)
           for ch, r in decision.rows.items()}
    touched = {c.channel for c in decision.changes}
    changes = list(decision.changes)
    for group in _groups(channels):
        healthy = [ch for ch in group if ch.id not in wished and ch.id not in touched and _healthy(out[ch.id])]
        if len(healthy) < 2:
            continue
        last = max((out[ch.id].changed_at for ch in healthy if is_smart(out[ch.id].reason)), default=None)
        if last is not None and now - last < policy.every:
            continue
        means = {ch.id: posterior_mean(tallies.get(ch.id, Tally()), policy.prior) for ch in healthy}
        share = shares({ch: means[ch] * (1 - fees.get(ch, 0.0)) for ch in means}, policy.floor)
        total = sum(out[ch.id].baseline for ch in healthy)
        now_total = sum(out[ch.id].target for ch in healthy)
        if max(abs(share[ch.id] - out[ch.id].target / now_total) for ch in healthy) <= policy.dead_band:
            continue
        for ch in healthy:
            row = out[ch.id]
            new = max(1, int(round(total * share[ch.id])))
            if new == row.target:
                continue
            reason = (f"{REASON}: {share[ch.id]:.0%} of {'/'.join(ch.methods) or 'the traffic'}, success "
                      f"{means[ch.id]:.1%}, fee {fees.get(ch.id, 0.0):.2%}")
            changes.append(WeightChange(ch.id, row.target, new, reason, now))
            out[ch.id] = replace(row, target=new, step=0, reason=reason, changed_at=now, healthy_since=None)
    return Decision(out, changes, decision.held)


def _healthy(row: RoutingRow) -> bool:
    return (not row.operator_hold and row.baseline > 0 and row.target > 0
            and (row.target == row.baseline or is_smart(row.reason)))


def unwind(rows: Mapping[str, RoutingRow], decision: Decision, wished: set[str], *, now: datetime) -> Decision:
    """With smart weighting switched off: every healthy channel still at a smart weight goes back to its baseline."""
    touched = {c.channel for c in decision.changes}
    out = dict(decision.rows)
    changes = list(decision.changes)
    for ch, row in decision.rows.items():
        if ch in wished or ch in touched or row.operator_hold or not is_smart(row.reason) or row.target == 0:
            continue
        reason = "smart weighting off: back to the baseline"
        if row.target != row.baseline:
            changes.append(WeightChange(ch, row.target, row.baseline, reason, now))
        out[ch] = replace(row, target=row.baseline, step=0, reason=reason, changed_at=now, healthy_since=None)
    return Decision(out, changes, decision.held)
