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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pandas as pd

from monitor.alerts.evaluate import Snapshot, evaluate
from monitor.alerts.signals import Signals
from monitor.config import LoadedConfig
from monitor.models import AlertEvent, AlertState, ProbeResult, RoutingRow
from monitor.routing.plan import plan
from monitor.snapshot import (
    PROBE_WINDOW_SIGNALS,
    in_maintenance,
    merchant_standing,
    order_view,
    orders_since,
    unsettled,
    windows,
)
from monitor.store import Store

__all__ = ["Moment", "backtest"]


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


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t <= end:
        yield t
        t += step


class _History:
    """History loaded once, cut at any moment to what was known then."""

    def __init__(self, cfg: LoadedConfig, store: Store, start: datetime) -> None:
        self.cfg = cfg
        spans = windows(cfg)
        self.frame = store.orders_frame(orders_since(cfg, start))
        probe_windows = [r.window for r in cfg.monitor.rules if r.signal in PROBE_WINDOW_SIGNALS]
        self.probe_window = max((spans.get(w or "15m", max(spans.values())) for w in probe_windows), default=None)
        self.probes = sorted(store.probe_results(since=start - timedelta(days=1)),
                             key=lambda r: (r.started_at, r.probe))
        self.detectors = any(r.detector is not None for r in cfg.monitor.rules)

    def snapshot(self, t: datetime) -> Snapshot:
        """What the daemon's snapshot would have held at ``t``: orders created by then, probes run by then."""
        created = self.frame["created_at"]
        known = self.frame[created.isna() | (created <= pd.Timestamp(t))]
        orders = order_view(self.cfg, known, t, outcomes=self.detectors)
        streaks, last, recent = _probe_view(self.probes, t, self.probe_window)
        return Snapshot(t, orders.stats, Signals(orders.stats, streaks, recent, unsettled(last),
                                                    merchant_standing(last)), last,
                        orders.outcomes)


def _muted_in(channels: set[str]) -> Callable[[str, str], bool]:
    """Muting as it was at the time: maintenance windows (silences, decided by people then, are not replayed)."""
    return lambda rule, channel: channel in channels


def _alert_moment(t: datetime, e: AlertEvent, names: Mapping[str, str]) -> Moment:
    return Moment(t, e.kind, e.channel, e.rule,
                  f"{e.kind.upper()} {e.rule} on {names[e.channel]} ({e.channel}): {e.summary}")


def backtest(cfg: LoadedConfig, store: Store, weights: Mapping[str, int], *, since: timedelta, step: timedelta,
             now: datetime) -> list[Moment]:
    """What the rules would have done over ``(now - since, now]``, evaluated every ``step``: the daemon's own
    evaluation step (:func:`~monitor.alerts.evaluate.evaluate`) and routing plan
    (:func:`~monitor.routing.plan.plan`) on history cut at each moment."""
    start = now - since
    history = _History(cfg, store, start)
    names = {c.id: c.name for c in cfg.channels}
    simulated = {c.id: int(weights.get(c.id, c.weight)) for c in cfg.channels}
    rows: dict[str, RoutingRow] = {}
    states: dict[tuple[str, str], AlertState] = {}
    changes_at: list[datetime] = []
    out: list[Moment] = []
    for t in _steps(start, now, step):
        maintenance = in_maintenance(cfg, t)
        result = evaluate(cfg, history.snapshot(t), states, muted=_muted_in(set(maintenance)))
        states = result.states
        out += [_alert_moment(t, e, names) for e in result.loud]
        if cfg.monitor.routing.mode == "off":
            continue
        decision = plan(cfg, states, maintenance, simulated, rows, now=t,
                        changes_last_hour=sum(1 for c in changes_at if c > t - timedelta(hours=1)))
        rows = {ch: replace(r, applied=r.target) for ch, r in decision.rows.items()}
        for c in decision.changes:
            simulated[c.channel] = c.new
            if c.new < c.old:
                changes_at.append(t)
            out.append(Moment(t, "weight", c.channel, c.rule,
                              f"WEIGHT {names[c.channel]} ({c.channel}) {c.old} → {c.new} ({c.reason})"))
    return out
