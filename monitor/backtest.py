"""``paymon backtest``: replay stored history through the same rule code, to tune thresholds before trusting them.

History (orders and probe results) is read once; then time steps from ``now - since`` to ``now``. At each step
only what was known at that moment is used (orders created by then, outcomes and callbacks up to then, probe
results up to then), the rules advance one lifecycle step, maintenance windows and inhibition mute as they would,
and the routing policy decides weights from a simulated copy of the weights as they were when the period began
(read back from the weight-change audit: a drain still in force then is replayed from the drained weight and the
operator's baseline; today's file only for channels the audit never mentions). Weight edits the audit records as
the operator's are applied to the simulated copy when they happened. Nothing is written: not the store, not the
weights, no notifications. Silences are not replayed (they were decided by people at the time). ``detector: cusum``
rules replay too, learning their baseline from the history loaded for the replay.

A period reaching back before the first stored order or probe result starts at that first record instead
(``clamped``): stepping through years without data would only take time. Without any record there is nothing to
replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pandas as pd

from monitor.alerts.evaluate import Evaluation, Snapshot, evaluate
from monitor.alerts.recovery import lowered_at, passing
from monitor.alerts.signals import Signals
from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.models import AlertEvent, AlertState, ProbeResult, RoutingRow, WeightChange
from monitor.routing.plan import plan
from monitor.routing.smart import is_smart
from monitor.snapshot import (
    PROBE_WINDOW_SIGNALS,
    held_down,
    in_maintenance,
    merchant_standing,
    order_view,
    orders_since,
    unsettled,
    windows,
)
from monitor.store import Store

__all__ = ["History", "Moment", "Replay", "Simulation", "backtest", "routing_at"]

#: No replay starts before this: a ``--since`` of 100000 days must not overflow the calendar.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How many audited weight changes are read back at most (newest first).
_AUDIT_LIMIT = 1_000_000


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


@dataclass(frozen=True, slots=True)
class Replay:
    """A backtest's answer: the timeline, where it started (``None``: nothing stored to replay), whether that start
    was moved forward to the first record (``clamped``), and how many steps were evaluated."""

    moments: list[Moment]
    start: datetime | None
    clamped: bool = False
    steps: int = 0


def routing_at(channels: Mapping[str, int], audit: list[WeightChange], at: datetime
               ) -> tuple[dict[str, int], dict[str, RoutingRow]]:
    """Each channel's weight at ``at`` and, where it was below the operator's baseline then (drained or part-way
    restored), the routing row the policy had, from the weight-change ``audit`` (oldest first). ``channels`` maps
    each channel to its weight today, used for channels the audit says nothing about.

    The weight at ``at`` is the last change's ``new`` before it, else the first later change's ``old``. The
    baseline is the last operator edit's ``new`` before ``at``, else the weight before the first change paymon
    made (the operator's weight it started from)."""
    weights: dict[str, int] = {}
    rows: dict[str, RoutingRow] = {}
    for channel, today in channels.items():
        mine = [c for c in audit if c.channel == channel]
        before = [c for c in mine if c.at <= at]
        later = [c for c in mine if c.at > at]
        weight = before[-1].new if before else later[0].old if later else today
        edits = [c for c in before if c.actor == "operator"]
        baseline = max(edits[-1].new if edits else mine[0].old if mine else today, weight)
        weights[channel] = weight
        if weight < baseline and before:
            last = before[-1]
            rows[channel] = RoutingRow(channel, baseline, weight, weight, 0, last.reason, last.at)
    return weights, rows


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t <= end:
        yield t
        t += step


class History:
    """History loaded once, cut at any moment to what was known then: orders as a frame (``orders_frame``) and
    probe results sorted oldest first. ``paymon backtest`` loads it from the store (:meth:`load`); the routing
    bench builds it from the orders and probes it simulated."""

    def __init__(self, cfg: LoadedConfig, frame: pd.DataFrame, probes: list[ProbeResult]) -> None:
        self.cfg = cfg
        spans = windows(cfg)
        self.frame = frame
        probe_windows = [r.window for r in cfg.monitor.rules if r.signal in PROBE_WINDOW_SIGNALS]
        self.probe_window = max((spans.get(w or "15m", max(spans.values())) for w in probe_windows), default=None)
        self.probes = probes
        self.detectors = any(r.detector is not None for r in cfg.monitor.rules)

    @classmethod
    def load(cls, cfg: LoadedConfig, store: Store, start: datetime) -> History:
        """What the store holds for a replay from ``start`` (and the windows reaching back before it)."""
        return cls(cfg, store.orders_frame(orders_since(cfg, start)),
                   sorted(store.probe_results(since=start - timedelta(days=1)), key=lambda r: (r.started_at, r.probe)))

    def first_record(self) -> datetime | None:
        """When the earliest stored order was created or probe ran; None without any."""
        created = self.frame["created_at"].dropna() if len(self.frame) else None
        firsts = [self.probes[0].started_at] if self.probes else []
        if created is not None and len(created):
            firsts.append(created.min().to_pydatetime())
        return min(firsts) if firsts else None

    def snapshot(self, t: datetime, rows: Mapping[str, RoutingRow], lowered: Mapping[str, datetime]) -> Snapshot:
        """What the daemon's snapshot would have held at ``t``: orders created by then, probes run by then, and
        the channels the simulated routing ``rows`` hold down."""
        created = self.frame["created_at"]
        known = self.frame[created.isna() | (created <= pd.Timestamp(t))]
        orders = order_view(self.cfg, known, t, outcomes=self.detectors)
        streaks, last, recent = _probe_view(self.probes, t, self.probe_window)
        return Snapshot(t, orders.stats, Signals(orders.stats, streaks, recent, unsettled(last),
                                                    merchant_standing(last)), last,
                        orders.outcomes, recovering=held_down(self.cfg, rows, orders.judged, last, t, lowered),
                        order_times=orders.order_times, known_until=orders.known_until)


@dataclass
class Simulation:
    """paymon's evaluation and routing on a simulated copy of the weights, one step at a time, as the daemon's
    cycle runs them (snapshot with the channels held down → evaluate → plan with the channels whose probes pass).
    ``paymon backtest`` steps it through stored history; the routing bench runs it in a closed loop, the shop
    reading the weights it decides."""

    cfg: LoadedConfig
    #: The weights the shop reads (changed in place by :meth:`route`).
    weights: dict[str, int]
    rows: dict[str, RoutingRow] = field(default_factory=dict)
    #: When paymon last lowered each channel (``monitor.alerts.recovery.lowered_at``).
    lowered: dict[str, datetime] = field(default_factory=dict)
    states: dict[tuple[str, str], AlertState] = field(default_factory=dict)
    #: When paymon lowered a weight (the hourly budget counts these).
    changes_at: list[datetime] = field(default_factory=list)

    def snapshot(self, history: History, t: datetime) -> Snapshot:
        """The snapshot at ``t``, the channels these rows hold down included (as the daemon's store would)."""
        return history.snapshot(t, self.rows if self.cfg.monitor.routing.mode in ("auto", "smart") else {},
                                self.lowered)

    def evaluate(self, snap: Snapshot, maintenance: Mapping[str, MaintenanceWindow]) -> Evaluation:
        """The shared evaluation step, maintenance windows muting (silences are people's decisions: not here)."""
        result = evaluate(self.cfg, snap, self.states, muted=_muted_in(set(maintenance)))
        self.states = result.states
        return result

    def route(self, snap: Snapshot, maintenance: Mapping[str, MaintenanceWindow]) -> list[WeightChange]:
        """The routing plan on the states after :meth:`evaluate`; its changes are applied to ``weights``."""
        if self.cfg.monitor.routing.mode == "off":
            return []
        t = snap.now
        decision = plan(self.cfg, self.states, maintenance, self.weights, self.rows, now=t,
                        changes_last_hour=sum(1 for c in self.changes_at if c > t - timedelta(hours=1)),
                        probes_ok=passing(self.rows, snap.last_probes), stats=snap.stats)
        self.rows = {ch: replace(r, applied=r.target) for ch, r in decision.rows.items()}
        for c in decision.changes:
            self.weights[c.channel] = c.new
            if c.actor == "paymon" and c.new < c.old and not is_smart(c.reason):
                self.changes_at.append(t)
                self.lowered[c.channel] = t
        return decision.changes


def _muted_in(channels: set[str]) -> Callable[[str, str], bool]:
    """Muting as it was at the time: maintenance windows (silences, decided by people then, are not replayed)."""
    return lambda rule, channel: channel in channels


def _alert_moment(t: datetime, e: AlertEvent, names: Mapping[str, str]) -> Moment:
    return Moment(t, e.kind, e.channel, e.rule,
                  f"{e.kind.upper()} {e.rule} on {names[e.channel]} ({e.channel}): {e.summary}")


def backtest(cfg: LoadedConfig, store: Store, weights: Mapping[str, int], *, since: timedelta, step: timedelta,
             now: datetime, on_progress: Callable[[int, int, datetime], None] | None = None,
             on_start: Callable[[datetime, bool], None] | None = None) -> Replay:
    """What the rules would have done over ``(now - since, now]``, evaluated every ``step``: the daemon's own
    evaluation step (:func:`~monitor.alerts.evaluate.evaluate`) and routing plan
    (:func:`~monitor.routing.plan.plan`) on history cut at each moment. ``weights`` are today's, for channels the
    weight audit never mentions. ``on_start(start, clamped)`` is called once the start is known (before the first
    step), ``on_progress(done, total, at)`` about a hundred times on the way."""
    start = now - since if since < now - _EPOCH else _EPOCH
    history = History.load(cfg, store, start)
    first = history.first_record()
    if first is None or first > now:
        return Replay([], None)
    clamped = first > start
    if clamped:
        start = first
    if on_start is not None:
        on_start(start, clamped)
    audit = sorted(store.weight_history(limit=_AUDIT_LIMIT), key=lambda c: c.at)
    names = {c.id: c.name for c in cfg.channels}
    simulated, rows = routing_at({c.id: int(weights.get(c.id, c.weight)) for c in cfg.channels}, audit, start)
    edits = [c for c in audit if c.actor == "operator" and c.at > start and c.channel in simulated]
    sim = Simulation(cfg, simulated, rows, lowered_at(c for c in audit if c.at <= start))
    out: list[Moment] = []
    total = int((now - start) / step) + 1
    every = max(1, total // 100)
    for done, t in enumerate(_steps(start, now, step), start=1):
        maintenance = in_maintenance(cfg, t)
        snap = sim.snapshot(history, t)
        result = sim.evaluate(snap, maintenance)
        out += [_alert_moment(t, e, names) for e in result.loud]
        while edits and edits[0].at <= t:  # the operator's own edits, when they happened
            edit = edits.pop(0)
            sim.weights[edit.channel] = edit.new
        out += [Moment(t, "weight", c.channel, c.rule,
                       f"WEIGHT {names[c.channel]} ({c.channel}) {c.old} → {c.new} ({c.reason})")
                for c in sim.route(snap, maintenance)]
        if on_progress is not None and (done % every == 0 or done == total):
            on_progress(done, total, t)
    return Replay(out, start, clamped, total)
