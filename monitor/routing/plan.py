"""Routing wishes and the plan: what firing rules and maintenance windows ask of the weights, and the policy's
answer for this cycle. Pure; the daemon's routing stage (``monitor.routing.stage``) and ``paymon backtest`` both
call :func:`plan`, the first with the shared config's weights, the second with a simulated copy. ``routing.mode:
smart`` adds :mod:`monitor.routing.smart` on top of the rule-driven policy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from monitor.alerts.muting import inhibited_by
from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.models import AlertState, ChannelStats, RoutingRow
from monitor.routing.policy import ChannelRouting, Decision, RestorePolicy, Wish, decide
from monitor.routing.smart import SmartPolicy, Tally, smart_view, smart_weights, unwind

__all__ = ["plan", "restore_policy", "weight_wishes"]


def weight_wishes(cfg: LoadedConfig, states: Mapping[tuple[str, str], AlertState],
                  maintenance: Mapping[str, MaintenanceWindow]) -> list[Wish]:
    """What firing rules with weight actions, and draining maintenance windows, ask of the routing policy."""
    actions = {r.name: r.actions for r in cfg.monitor.rules}
    on_orders = {r.name for r in cfg.monitor.rules if r.signal == "success_ratio"}
    wishes = []
    for (rule, channel), s in states.items():
        if s.state != "firing":
            continue
        for a in actions.get(rule, ()):
            if a.kind == "drain":
                wishes.append(Wish(channel, rule, 0.0, by_orders=rule in on_orders))
            elif a.kind == "reduce_weight" and a.factor is not None:
                wishes.append(Wish(channel, rule, a.factor, by_orders=rule in on_orders))
    wishes += [Wish(channel, "maintenance", 0.0, "maintenance window") for channel, w in maintenance.items()
               if w.drain]
    # The policy keeps the first of equal wishes: let a rule that inhibits another go first, so a change both
    # ask for names the rule that says why (merchant_banned, not the channel_down it inhibits).
    inhibited = inhibited_by({r.name: r.inhibits for r in cfg.monitor.rules}, states)
    return sorted(wishes, key=lambda w: (w.rule, w.channel) in inhibited)


def restore_policy(cfg: LoadedConfig) -> RestorePolicy:
    """``routing.restore`` (and ``routing.explore``'s share) as the policy takes them."""
    routing = cfg.monitor.routing
    r = routing.restore
    return RestorePolicy(tuple(r.steps), r.every, r.healthy_for,
                         routing.explore.share if routing.explore is not None else None)


def plan(cfg: LoadedConfig, states: Mapping[tuple[str, str], AlertState],
         maintenance: Mapping[str, MaintenanceWindow], weights: Mapping[str, int], rows: Mapping[str, RoutingRow],
         *, now: datetime, changes_last_hour: int, probes_ok: Collection[str] = (),
         stats: Mapping[tuple[str, str], ChannelStats] | None = None) -> Decision:
    """Every channel's target weight for this cycle, from the alert states after evaluation, the open maintenance
    windows, the weights the shop reads now (channels without one are left out), the routing rows so far and the
    channels whose probes pass now. With ``routing.mode: smart``, the snapshot's window ``stats`` give each
    channel's success counts."""
    routing = cfg.monitor.routing
    channels = [ChannelRouting(c.id, weights[c.id], tuple(c.methods), c.id in probes_ok)
                for c in cfg.channels if c.id in weights]
    wishes = weight_wishes(cfg, states, maintenance)
    smart = routing.mode == "smart"
    decision = decide(
        channels, smart_view(rows) if smart else rows, wishes, now=now,
        restore=restore_policy(cfg),
        min_active_per_method=routing.min_active_per_method,
        max_changes_per_hour=routing.max_changes_per_hour, changes_last_hour=changes_last_hour,
    )
    wished = {w.channel for w in wishes}
    if not smart:
        return unwind(rows, decision, wished, now=now)
    s = routing.smart
    tallies = {ch: Tally(st.succeeded, st.failed) for (ch, window), st in (stats or {}).items() if window == s.window}
    return smart_weights(channels, rows, decision, wished, tallies, {c.id: c.fee_rate for c in cfg.channels},
                         SmartPolicy(s.every, s.floor, s.dead_band, s.prior), now=now)
