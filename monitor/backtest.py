"""``paymon backtest``: replay stored history through the same rule code, to tune thresholds before trusting them.

History (orders and probe results) is read once; then time steps from ``now - since`` to ``now``. At each step
only what was known at that moment is used (orders created by then, outcomes and callbacks up to then, probe
results up to then), the rules advance one lifecycle step, maintenance windows and inhibition mute as they would,
and the routing policy decides weights from a simulated copy of today's channels.yaml weights. Nothing is written:
not the store, not the weights, no notifications. Silences are not replayed (they were decided by people at the
time). ``detector: cusum`` rules replay too, learning their baseline from the history loaded for the replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from monitor.alerts.muting import inhibited_by, route
from monitor.alerts.signals import Signals
from monitor.config import LoadedConfig
from monitor.metrics.stats import compute_stats, decided_outcomes
from monitor.models import AlertState, ProbeResult
from monitor.pipeline import Snapshot, _windows, evaluate_rules, in_maintenance, weight_wishes
from monitor.routing.policy import ChannelRouting, RestorePolicy, decide
from monitor.store import RoutingRow, Store

__all__ = ["Moment", "backtest"]

_PROBE_WINDOW_SIGNALS = ("probe_success_ratio", "probe_latency_p95", "bad_signatures")


@dataclass(frozen=True, slots=True)
class Moment:
    """Something the rules would have done: ``kind`` is firing / reminder / resolved / weight."""

    at: datetime
    kind: str
    channel: str
    rule: str | None
    text: str


def _probe_view(results: list[ProbeResult], now: datetime, window: timedelta | None) -> tuple[
    dict[tuple[str, str], int], dict[tuple[str, str], ProbeResult], dict[tuple[str, str], list[ProbeResult]]
]:
    """Failure streaks, last result and recent results (newest first) of every (channel, probe) as of ``now``.
    ``results`` is sorted oldest first."""
    streaks: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], ProbeResult] = {}
    recent: dict[tuple[str, str], list[ProbeResult]] = {}
    for r in results:
        if r.started_at > now:
            break
        key = (r.channel, r.probe)
        last[key] = r
        streaks[key] = 0 if r.ok else streaks.get(key, 0) + 1
        if window is not None and r.started_at >= now - window:
            recent.setdefault(key, []).insert(0, r)
    return streaks, last, recent


def _muter(maintenance: set[str], inhibited: set[tuple[str, str]]) -> Callable[[str, str], bool]:
    def muted(rule: str, channel: str) -> bool:
        return channel in maintenance or (rule, channel) in inhibited

    return muted


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t <= end:
        yield t
        t += step


def backtest(cfg: LoadedConfig, store: Store, weights: Mapping[str, int], *, since: timedelta, step: timedelta,
             now: datetime) -> list[Moment]:
    """What the rules would have done over ``(now - since, now]``, evaluated every ``step``."""
    d = cfg.monitor.defaults
    windows = _windows(cfg)
    widest = max(windows.values())
    timeouts = {c.id: c.pay_timeout for c in cfg.channels if c.pay_timeout is not None}
    longest_pay = max([d.pay_timeout, *timeouts.values()])
    start = now - since
    frame = store.orders_frame(start - widest - longest_pay - d.callback_deadline)
    probe_windows = [r.window for r in cfg.monitor.rules if r.signal in _PROBE_WINDOW_SIGNALS]
    probe_window = max((windows.get(w or "15m", widest) for w in probe_windows), default=None)
    probes = sorted(store.probe_results(since=start - timedelta(days=1)), key=lambda r: (r.started_at, r.probe))
    names = {c.id: c.name for c in cfg.channels}
    channels = [c.id for c in cfg.channels]
    inhibits = {r.name: r.inhibits for r in cfg.monitor.rules}
    announce = {r.name for r in cfg.monitor.rules if any(a.kind == "notify" for a in r.actions)}
    routing = cfg.monitor.routing
    restore = RestorePolicy(tuple(routing.restore.steps), routing.restore.every, routing.restore.healthy_for)
    methods = {c.id: tuple(c.methods) for c in cfg.channels}
    simulated = {ch: int(weights.get(ch, c.weight)) for ch, c in ((c.id, c) for c in cfg.channels)}
    rows: dict[str, RoutingRow] = {}
    states: dict[tuple[str, str], AlertState] = {}
    changes_at: list[datetime] = []
    out: list[Moment] = []
    created = frame["created_at"]
    detectors = any(r.detector is not None for r in cfg.monitor.rules)
    for t in _steps(start, now, step):
        ts = pd.Timestamp(t)
        known = frame[created.isna() | (created <= ts)]
        stats = compute_stats(known, now=t, windows=windows, channels=channels, pay_timeout=timeouts,
                              default_pay_timeout=d.pay_timeout, callback_deadline=d.callback_deadline,
                              min_orders=d.min_orders)
        streaks, last, recent = _probe_view(probes, t, probe_window)
        unsettled = {ch: r.value for (ch, p), r in last.items() if p == "balance" and r.ok and r.value is not None}
        outcomes = decided_outcomes(known, now=t, channels=channels, pay_timeout=timeouts,
                                    default_pay_timeout=d.pay_timeout) if detectors else {}
        snap = Snapshot(t, stats, Signals(stats, streaks, recent, unsettled), last, outcomes)
        maintenance = in_maintenance(cfg, t)
        events, evaluated, specs = evaluate_rules(cfg, snap, states)
        inhibited = inhibited_by(inhibits, evaluated)
        routed = route(events, states, evaluated, announce=announce, specs=specs, now=t,
                       muted=_muter(set(maintenance), inhibited))
        states = routed.states
        for e in routed.loud:
            out.append(Moment(t, e.kind, e.channel, e.rule, f"{e.kind.upper()} {e.rule} on {names[e.channel]} "
                                                            f"({e.channel}): {e.summary}"))
        if routing.mode == "off":
            continue
        recent_changes = sum(1 for c in changes_at if c > t - timedelta(hours=1))
        decision = decide(
            [ChannelRouting(ch, w, methods[ch]) for ch, w in simulated.items()], rows,
            weight_wishes(cfg, states, maintenance), now=t, restore=restore,
            min_active_per_method=routing.min_active_per_method, max_changes_per_hour=routing.max_changes_per_hour,
            changes_last_hour=recent_changes,
        )
        rows = {ch: RoutingRow(r.channel, r.baseline, r.target, r.target, r.step, r.reason, r.changed_at,
                               r.healthy_since, r.operator_hold) for ch, r in decision.rows.items()}
        for c in decision.changes:
            simulated[c.channel] = c.new
            if c.new < c.old:
                changes_at.append(t)
            out.append(Moment(t, "weight", c.channel, c.rule,
                              f"WEIGHT {names[c.channel]} ({c.channel}) {c.old} → {c.new} ({c.reason})"))
    return out
