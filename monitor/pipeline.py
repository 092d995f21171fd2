"""One evaluation cycle: ingest → stats → rules → alert state → routing → notify. The one place stages chain.

Each stage is pure or owns one kind of I/O; this module only passes their results along. ``Pipeline.cycle`` is
what the daemon runs on its schedule and what ``paymon once`` runs once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from monitor.alerts.detectors import CusumState, Tally, estimate_baseline, params_for, update
from monitor.alerts.dispatch import Sink, deliver_outbox
from monitor.alerts.lifecycle import RuleSpec, step
from monitor.alerts.muting import inhibited_by, route
from monitor.alerts.signals import Query, Signals, signal_value
from monitor.clock import Clock
from monitor.config import LoadedConfig, Rule, parse_duration
from monitor.config.maintenance import MaintenanceWindow, open_window
from monitor.errors import SinkError
from monitor.ingest import Source
from monitor.metrics.counting import OnceCounter
from monitor.metrics.prom import Metrics
from monitor.metrics.stats import ChannelStats, compute_stats, decided_outcomes, judge_orders, order_facts
from monitor.models import AlertEvent, AlertState, IngestResult, ProbeResult, WeightChange
from monitor.routing.policy import ChannelRouting, RestorePolicy, Wish, decide
from monitor.routing.yaml_file import YamlWeightSink
from monitor.store import Store
from monitor.store.reconcile import LostOrder, ReconcileStore

__all__ = ["CycleReport", "Pipeline", "Snapshot", "channel_states", "snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What paymon knows at ``now``: window stats, signals, the last probe of each (channel, probe)."""

    now: datetime
    stats: Mapping[tuple[str, str], ChannelStats]
    signals: Signals
    last_probes: Mapping[tuple[str, str], ProbeResult]
    #: Decided orders per channel, (when, succeeded?), oldest first: what statistical detectors read.
    outcomes: Mapping[str, list[tuple[datetime, bool]]] = field(default_factory=dict)
    #: Probe results per (channel, probe) as (when, ok?), oldest first, for detectors on probe outcomes.
    probe_outcomes: Mapping[tuple[str, str], list[tuple[datetime, bool]]] = field(default_factory=dict)
    #: Past firing periods per (rule, channel), (start, end or None), which a detector's baseline leaves out.
    firing_periods: Mapping[tuple[str, str], list[tuple[datetime, datetime | None]]] = field(default_factory=dict)
    #: The orders the stats were computed from, judged (``judge_orders``), for the order counters.
    judged: pd.DataFrame | None = None


@dataclass(frozen=True)
class CycleReport:
    """What one cycle saw and did."""

    now: datetime
    ingested: IngestResult
    events: list[AlertEvent] = field(default_factory=list)
    changes: list[WeightChange] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    #: Lost orders found (and recorded lost orders the shop has since completed) in this cycle.
    lost: list[LostOrder] = field(default_factory=list)
    recovered: list[LostOrder] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    stats: Mapping[tuple[str, str], ChannelStats] = field(default_factory=dict)


def _windows(cfg: LoadedConfig) -> dict[str, timedelta]:
    labels = list(cfg.monitor.defaults.windows)
    labels += [r.window for r in cfg.monitor.rules if r.window and r.window not in labels]
    return {label: parse_duration(label) for label in labels}


def snapshot(cfg: LoadedConfig, store: Store, now: datetime) -> Snapshot:
    """Read the store and compute every number the rules and the status view need."""
    d = cfg.monitor.defaults
    windows = _windows(cfg)
    widest = max(windows.values())
    timeouts = {c.id: c.pay_timeout for c in cfg.channels if c.pay_timeout is not None}
    longest_pay = max([d.pay_timeout, *timeouts.values()])
    frame = store.orders_frame(now - widest - longest_pay - d.callback_deadline)
    channels = [c.id for c in cfg.channels]
    judged = judge_orders(frame, now=now, channels=channels, pay_timeout=timeouts, default_pay_timeout=d.pay_timeout,
                          callback_deadline=d.callback_deadline)
    stats = compute_stats(
        frame, now=now, windows=windows, channels=channels, pay_timeout=timeouts, default_pay_timeout=d.pay_timeout,
        callback_deadline=d.callback_deadline, min_orders=d.min_orders, judged=judged,
    )
    # Only windowed probe rules read probe history; load just their widest window (not the 24h stats window).
    probe_windows = [parse_duration(r.window or "15m") for r in cfg.monitor.rules
                     if r.signal in ("probe_success_ratio", "probe_latency_p95", "bad_signatures")]
    recent: dict[tuple[str, str], list[ProbeResult]] = {}
    if probe_windows:
        for r in store.probe_results(since=now - max(probe_windows)):
            recent.setdefault((r.channel, r.probe), []).append(r)
    last = store.last_probes()
    unsettled = {ch: r.value for (ch, probe), r in last.items()
                 if probe == "balance" and r.ok and r.value is not None}
    signals = Signals(stats=stats, probe_streaks=store.probe_failures_in_a_row(), probe_window=recent,
                      unsettled_balance=unsettled)
    detectors = [r for r in cfg.monitor.rules if r.detector is not None]
    if not detectors:
        return Snapshot(now, stats, signals, last, judged=judged)
    outcomes = decided_outcomes(frame, now=now, channels=channels, pay_timeout=timeouts,
                                default_pay_timeout=d.pay_timeout, judged=judged)
    probe_outcomes: dict[tuple[str, str], list[tuple[datetime, bool]]] = {}
    if any(r.signal in PROBE_DETECTOR_SIGNALS for r in detectors):
        for r in reversed(store.probe_results(since=now - DETECTOR_HISTORY)):
            probe_outcomes.setdefault((r.channel, r.probe), []).append((r.started_at, r.ok))
    periods: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = {}
    names = {r.name for r in detectors}
    for h in reversed(store.alert_history(since=now - DETECTOR_HISTORY, limit=100_000)):
        if h["rule"] not in names:
            continue
        spans = periods.setdefault((h["rule"], h["channel"]), [])
        if h["kind"] == "firing":
            spans.append((h["at"], None))
        elif h["kind"] == "resolved" and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], h["at"])
    return Snapshot(now, stats, signals, last, outcomes, probe_outcomes, periods, judged)


def in_maintenance(cfg: LoadedConfig, now: datetime) -> dict[str, MaintenanceWindow]:
    """Channels with a maintenance window open at ``now``."""
    out: dict[str, MaintenanceWindow] = {}
    for ch in cfg.channels:
        window = open_window(ch.maintenance, ch.timezone, now)
        if window is not None:
            out[ch.id] = window
    return out


def channel_states(
    cfg: LoadedConfig, snap: Snapshot, alerts: Mapping[tuple[str, str], AlertState],
    maintenance: Mapping[str, MaintenanceWindow] | None = None,
) -> dict[str, str]:
    """maintenance / down / degraded / healthy / unknown per channel: an open maintenance window first, then what
    fires, then whether there is any data."""
    severity = {r.name: r.severity for r in cfg.monitor.rules}
    out: dict[str, str] = {}
    for ch in cfg.channels:
        if maintenance and ch.id in maintenance:
            out[ch.id] = "maintenance"
            continue
        firing = [severity.get(rule, "warning") for (rule, c), s in alerts.items()
                  if c == ch.id and s.state == "firing"]
        has_data = any(c == ch.id for c, _ in snap.last_probes) or any(
            s.decided > 0 for (c, _), s in snap.stats.items() if c == ch.id)
        if "critical" in firing:
            out[ch.id] = "down"
        elif firing:
            out[ch.id] = "degraded"
        else:
            out[ch.id] = "healthy" if has_data else "unknown"
    return out


def evaluate_rules(cfg: LoadedConfig, snap: Snapshot, prev: Mapping[tuple[str, str], AlertState]) -> tuple[
    list[AlertEvent], dict[tuple[str, str], AlertState], dict[str, RuleSpec]
]:
    """Every threshold rule on every channel it applies to, one lifecycle step each. Pure."""
    events: list[AlertEvent] = []
    specs: dict[str, RuleSpec] = {}
    current = dict(prev)
    d = cfg.monitor.defaults
    for rule in cfg.monitor.rules:
        if rule.detector is not None:
            if rule.signal in DETECTOR_SIGNALS:
                for ch in cfg.channels:
                    if rule.applies_to(ch):
                        key = (rule.name, ch.id)
                        spec, after, evs = cusum_step(rule, ch.id, snap, prev.get(key) or AlertState(rule.name, ch.id),
                                                      d.min_orders)
                        specs.setdefault(rule.name, spec)
                        current[key] = after
                        events.extend(evs)
            continue
        assert rule.threshold is not None  # config guarantees it without a detector
        spec = RuleSpec(
            name=rule.name, signal=rule.signal, op=rule.op, threshold=rule.threshold, severity=rule.severity,
            recover=rule.recover, for_=rule.for_, repeat=rule.repeat, max_reminders=rule.max_reminders,
            actions=tuple(a.kind for a in rule.actions),
        )
        specs[rule.name] = spec
        window = rule.window or "15m"
        for ch in cfg.channels:
            if not rule.applies_to(ch):
                continue
            q = Query(ch.id, window, parse_duration(window).total_seconds(), rule.probe or "query",
                      rule.min_orders if rule.min_orders is not None else d.min_orders)
            value = signal_value(rule.signal, snap.signals, q)
            before = prev.get((rule.name, ch.id)) or AlertState(rule.name, ch.id)
            after, evs = step(before, spec, value, snap.now)
            current[(rule.name, ch.id)] = after
            events.extend(evs)
    return events, current, specs


#: How far back detectors look for probe outcomes and past firing periods (orders: the window the cycle loads).
DETECTOR_HISTORY = timedelta(days=7)
#: Signals a statistical detector can watch: order outcomes, or probe outcomes.
DETECTOR_SIGNALS = ("success_ratio", "probe_success_ratio")
PROBE_DETECTOR_SIGNALS = ("probe_success_ratio",)


def cusum_step(rule: Rule, channel: str, snap: Snapshot, prev: AlertState,
               default_min_orders: int) -> tuple[RuleSpec, AlertState, list[AlertEvent]]:
    """One evaluation of a ``detector: cusum`` rule on one channel (see ``monitor.alerts.detectors``).

    The CUSUM reads the orders decided (or, for ``probe_success_ratio``, the probe results) since its last update
    against the channel's own baseline (its firing periods left out); it fires when it alarms. The CUSUM restarts
    after an alarm, so a firing alert resolves on the data instead: when the ratio over the rule's window (default
    15m) is back at least half-way between the design drop and the baseline. The detector's state travels in the
    alert state.
    """
    now = snap.now
    state = CusumState.from_dict(json.loads(prev.detector)) if prev.detector else CusumState()
    probe = rule.probe or "query"
    on_probes = rule.signal in PROBE_DETECTOR_SIGNALS
    outcomes = snap.probe_outcomes.get((channel, probe), []) if on_probes else snap.outcomes.get(channel, [])
    firing = list(snap.firing_periods.get((rule.name, channel), []))
    if prev.state == "firing" and prev.fired_at is not None and not any(end is None for _, end in firing):
        firing.append((prev.fired_at, None))
    baseline = estimate_baseline((Tally.one(at, ok) for at, ok in outcomes), now, firing)
    params = params_for(baseline, rule.false_alarms_per_week or 1.0) if baseline is not None else None
    spec = RuleSpec(
        name=rule.name, signal=f"{rule.signal}_cusum", op=">=", threshold=params.h if params else 0.0,
        severity=rule.severity, for_=rule.for_, repeat=rule.repeat, max_reminders=rule.max_reminders,
        actions=tuple(a.kind for a in rule.actions),
    )
    value: float | None = None
    if params is not None:
        since = state.updated_at
        fresh = [ok for at, ok in outcomes if since is not None and since < at.timestamp() <= now.timestamp()]
        state, alarmed, statistic = update(state, fresh, params, now)
        value = statistic
        if prev.state == "firing":
            window = rule.window or "15m"
            gate = rule.min_orders if rule.min_orders is not None else default_min_orders
            q = Query(channel, window, parse_duration(window).total_seconds(), probe, 0 if on_probes else gate)
            ratio = signal_value(rule.signal, snap.signals, q)
            value = 0.0 if ratio is not None and ratio >= (params.p0 + params.p1) / 2 else params.h
    state = replace(state, updated_at=now.timestamp())
    after, events = step(prev, spec, value, now)
    return spec, replace(after, detector=json.dumps(state.to_dict())), events


def weight_wishes(cfg: LoadedConfig, states: Mapping[tuple[str, str], AlertState],
                  maintenance: Mapping[str, MaintenanceWindow]) -> list[Wish]:
    """What firing rules with weight actions, and draining maintenance windows, ask of the routing policy."""
    actions = {r.name: r.actions for r in cfg.monitor.rules}
    wishes = []
    for (rule, channel), s in states.items():
        if s.state != "firing":
            continue
        for a in actions.get(rule, ()):
            if a.kind == "drain":
                wishes.append(Wish(channel, rule, 0.0))
            elif a.kind == "reduce_weight" and a.factor is not None:
                wishes.append(Wish(channel, rule, a.factor))
    wishes += [Wish(channel, "maintenance", 0.0, "maintenance window") for channel, w in maintenance.items()
               if w.drain]
    return wishes


class Pipeline:
    """Runs cycles for one loaded config. Built (and wired) only in ``monitor.cli``/``monitor.daemon``."""

    def __init__(
        self,
        cfg: LoadedConfig,
        store: Store,
        *,
        clock: Clock,
        metrics: Metrics,
        sinks: Mapping[str, Sink],
        weights: YamlWeightSink | None,
        sources: Sequence[Source] = (),
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.sinks = dict(sinks)
        self.weights = weights
        self.sources = list(sources)
        self._warned: set[str] = set()
        self._counter = OnceCounter()
        self.lost = ReconcileStore(store)
        started = clock.now()
        #: When each source last had new data (start time until then): ``paymon_ingest_lag_seconds``.
        self._last_data = {src.source_id: started for src in self.sources}

    def close(self) -> None:
        """Release the sources' open files."""
        for src in self.sources:
            src.close()

    # -- stages ------------------------------------------------------------------------------------------

    def ingest(self) -> IngestResult:
        total = IngestResult()
        for src in self.sources:
            try:
                r = src.poll()
            except OSError as exc:
                log.warning("source %s: %s", src.source_id, exc)
                r = IngestResult()
            for result in ("accepted", "duplicate", "rejected"):
                n = getattr(r, result)
                if n:
                    self.metrics.ingest_events_total.labels(src.source_id, result).inc(n)
            now = self.clock.now()
            if r.accepted or r.duplicate or r.rejected:
                self._last_data[src.source_id] = now
            lag = now - self._last_data.get(src.source_id, now)
            self.metrics.ingest_lag.labels(src.source_id).set(max(0.0, lag.total_seconds()))
            total += r
        return total

    def report_lost(self, now: datetime) -> tuple[list[LostOrder], list[LostOrder]]:
        """Record and announce, once each, the orders that just became lost and those the shop since completed."""
        d, rc = self.cfg.monitor.defaults, self.cfg.monitor.reconcile
        found, recovered = self.lost.report(now=now, deadline=d.callback_deadline, since=now - rc.horizon,
                                            sinks=list(self.sinks))
        for lo in found:
            log.warning("lost order %s on %s: paid at the channel %s (%s), no verified callback within %s",
                        lo.order_id, lo.channel, lo.channel_paid_at.isoformat() if lo.channel_paid_at else "?",
                        lo.evidence, d.callback_deadline)
        for lo in recovered:
            log.info("lost order %s on %s is now completed in the shop", lo.order_id, lo.channel)
        return found, recovered

    def _rules(self, snap: Snapshot, prev: Mapping[tuple[str, str], AlertState]) -> tuple[
        list[AlertEvent], dict[tuple[str, str], AlertState], dict[str, RuleSpec]
    ]:
        for rule in self.cfg.monitor.rules:
            if rule.detector is not None and rule.signal not in DETECTOR_SIGNALS and rule.name not in self._warned:
                log.warning("rule %s: detector %s watches success_ratio or probe_success_ratio; rule skipped",
                            rule.name, rule.detector)
                self._warned.add(rule.name)
        return evaluate_rules(self.cfg, snap, prev)

    def _routing(self, states: Mapping[tuple[str, str], AlertState], now: datetime,
                 maintenance: Mapping[str, MaintenanceWindow]) -> tuple[
        list[WeightChange], list[str], dict[str, int]
    ]:
        routing = self.cfg.monitor.routing
        if self.weights is None or routing.mode == "off":
            return [], [], {}
        try:
            file_weights = self.weights.read()
        except SinkError as exc:
            log.warning("routing: %s", exc)
            return [], [str(exc)], {}
        wishes = weight_wishes(self.cfg, states, maintenance)
        channels = [ChannelRouting(c.id, file_weights[c.id], tuple(c.methods))
                    for c in self.cfg.channels if c.id in file_weights]
        recent = [w for w in self.store.weight_history(since=now - timedelta(hours=1))
                  if w.actor == "paymon" and w.new < w.old]
        r = routing.restore
        decision = decide(
            channels, self.store.routing_states(), wishes, now=now,
            restore=RestorePolicy(tuple(r.steps), r.every, r.healthy_for),
            min_active_per_method=routing.min_active_per_method,
            max_changes_per_hour=routing.max_changes_per_hour, changes_last_hour=len(recent),
        )
        for msg in decision.held:
            if msg not in self._warned:
                log.warning("routing held: %s", msg)
                self._warned.add(msg)
        if routing.mode != "auto":  # suggest: say what would change, write nothing
            for c in decision.changes:
                key = f"suggest|{c.channel}|{c.old}|{c.new}"
                if key not in self._warned:
                    log.info("routing suggestion (mode: suggest, nothing written): %s %d -> %d (%s)",
                             c.channel, c.old, c.new, c.reason)
                    self._warned.add(key)
            return decision.changes, decision.held, file_weights
        self.store.save_routing(decision.rows.values(), decision.changes, list(self.sinks))
        pending = {ch: row.target for ch, row in decision.rows.items()
                   if file_weights.get(ch) != row.target}
        if pending:
            try:
                self.weights.write(pending)
            except SinkError as exc:
                log.warning("routing: cannot write weights (will retry): %s", exc)
                return decision.changes, decision.held, file_weights
            file_weights.update(pending)
        for ch, row in decision.rows.items():
            if row.applied != file_weights.get(ch) and file_weights.get(ch) == row.target:
                self.store.mark_applied(ch, row.target)
        return decision.changes, decision.held, file_weights

    def prune(self) -> tuple[int, int]:
        """Apply ``storage.retention``; returns (probe results, orders) deleted."""
        r = self.cfg.monitor.storage.retention
        deleted = self.store.prune(probes=r.probes, orders=r.orders)
        self.lost.prune(self.clock.now() - r.orders)
        if any(deleted):
            log.info("retention: deleted %d probe results and %d orders", *deleted)
        return deleted

    # -- the cycle ---------------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """Ingest, evaluate, act, notify; every step's writes are committed before the next starts."""
        ingested = self.ingest()
        now = self.clock.now()
        lost, recovered = self.report_lost(now)
        snap = snapshot(self.cfg, self.store, now)
        prev = self.store.alert_states()
        maintenance = in_maintenance(self.cfg, now)
        events, evaluated, specs = self._rules(snap, prev)
        notify_rules = {r.name for r in self.cfg.monitor.rules if any(a.kind == "notify" for a in r.actions)}
        silenced = {(s.channel, s.rule) for s in self.store.active_silences()}
        inhibited = inhibited_by({r.name: r.inhibits for r in self.cfg.monitor.rules}, evaluated)
        routed = route(
            events, prev, evaluated, announce=notify_rules, specs=specs, now=now,
            muted=lambda rule, ch: (ch in maintenance or (ch, None) in silenced or (ch, rule) in silenced
                                    or (rule, ch) in inhibited),
        )
        current = routed.states
        changed = [s for key, s in current.items() if prev.get(key) != s]
        self.store.save_alerts(changed, routed.loud, list(self.sinks))
        if routed.quiet:
            self.store.save_alerts([], routed.quiet, [])
        events = routed.loud + routed.quiet
        changes, held, weights = self._routing(current, now, maintenance)
        deliver_outbox(self.store, self.sinks, group_wait=self.cfg.monitor.notify.group_wait,
                       on_result=lambda sink, result: self.metrics.notifications_total.labels(sink, result).inc())
        states = channel_states(self.cfg, snap, current, maintenance)
        self._publish(snap, current, states, weights)
        return CycleReport(now, ingested, events, changes, held, lost, recovered, states, snap.stats)

    def _publish(self, snap: Snapshot, alerts: Mapping[tuple[str, str], AlertState], states: Mapping[str, str],
                 weights: Mapping[str, int]) -> None:
        m = self.metrics
        windows = list(self.cfg.monitor.defaults.windows)
        m.set_stats(snap.stats, windows[0] if windows else "15m")
        m.set_channel_states(states)
        severity = {r.name: r.severity for r in self.cfg.monitor.rules}
        keys = [(rule, ch, severity.get(rule, "warning")) for (rule, ch) in alerts]
        m.set_alerts([k for k in keys if alerts[(k[0], k[1])].state == "firing"], keys)
        m.set_weights(weights)
        m.leader.set(1)  # one instance acts; leader election among several is not built yet
        if snap.judged is not None:
            counts, latencies = self._counter.step(order_facts(snap.judged))
            for (channel, outcome), n in counts.items():
                m.orders_total.labels(channel, outcome).inc(n)
            for channel, seconds in latencies:
                if not math.isnan(seconds):
                    m.callback_latency.labels(channel).observe(max(0.0, seconds))
        depth = self.store.outbox_depth()
        for sink in self.sinks:
            m.notification_queue.labels(sink).set(depth.get(sink, 0))


def status_view(cfg: LoadedConfig, store: Store, now: datetime, weights: Mapping[str, int]) -> dict[str, Any]:
    """The JSON of ``paymon status --json`` and ``GET /api/status`` (no secrets: ids, names and numbers only)."""
    snap = snapshot(cfg, store, now)
    alerts = store.alert_states()
    states = channel_states(cfg, snap, alerts, in_maintenance(cfg, now))
    windows = list(cfg.monitor.defaults.windows)
    main = "15m" if "15m" in windows else windows[0]
    channels = []
    for ch in cfg.channels:
        s = snap.stats.get((ch.id, main))
        last = [p for (c, _), p in snap.last_probes.items() if c == ch.id]
        last.sort(key=lambda p: p.started_at, reverse=True)
        channels.append({
            "id": ch.id,
            "name": ch.name,
            "kind": ch.kind,
            "tier": ch.tier,
            "state": states[ch.id],
            "weight": weights.get(ch.id, ch.weight),
            "window": main,
            "success_ratio": None if s is None else s.success_ratio,
            "orders": 0 if s is None else s.orders,
            "lost": 0 if s is None else s.lost,
            "callback_p95_s": None if s is None else s.callback_p95,
            "funnel": None if s is None else {"created": s.orders, "redirected": s.redirected, "paid": s.paid,
                                              "callback": s.callback, "delivered": s.delivered},
            "last_probe": None if not last else {
                "probe": last[0].probe, "outcome": last[0].outcome, "at": last[0].started_at.isoformat(),
                "latency_s": round(last[0].latency_s, 4), "detail": last[0].detail,
            },
        })
    firing = [
        {"rule": s.rule, "channel": s.channel, "since": s.fired_at.isoformat() if s.fired_at else None,
         "value": s.value}
        for s in alerts.values() if s.state == "firing"
    ]
    lost = [
        {"order_id": lo.order_id, "channel": lo.channel, "amount": lo.amount, "trade_no": lo.trade_no,
         "channel_paid_at": lo.channel_paid_at.isoformat() if lo.channel_paid_at else None,
         "evidence": lo.evidence, "found_at": lo.found_at.isoformat()}
        for lo in ReconcileStore(store).lost_orders(open_only=True, limit=50)
    ]
    return {"now": now.isoformat(), "channels": channels, "firing": firing, "lost_orders": lost}
