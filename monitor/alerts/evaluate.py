"""Evaluation: one pure step from what paymon knows (a :class:`Snapshot`) and the alert states before it to the
alert events and states after it. The daemon's cycle and ``paymon backtest`` both call :func:`evaluate`, so a
replay of history fires exactly what the daemon would have fired.

The step is: every threshold rule advances one lifecycle step on every channel it applies to (``lifecycle.step``),
every ``detector: cusum`` rule one CUSUM update (``detectors``); then inhibition marks which alerts a firing rule
silences (``muting.inhibited_by``) and routing decides which events are announced and which are only recorded
(``muting.route``: maintenance windows, silences, inhibition, the rules' ``notify`` actions). No I/O.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pandas as pd

from monitor.alerts.detectors import CusumState, Tally, estimate_baseline, params_for, update
from monitor.alerts.early import OrderTimes, early_params, early_update, learn_pay_delays
from monitor.alerts.lifecycle import RuleSpec, make_event, step
from monitor.alerts.muting import Routed, inhibited_by, route
from monitor.alerts.recovery import Recovering, judged_ratio, resolves_on_probes
from monitor.alerts.signals import Query, Signals, signal_value
from monitor.config import LoadedConfig, Rule, parse_duration
from monitor.models import AlertEvent, AlertState, ChannelStats, ProbeResult

__all__ = [
    "DETECTOR_HISTORY",
    "DETECTOR_SIGNALS",
    "PROBE_DETECTOR_SIGNALS",
    "Evaluation",
    "Snapshot",
    "cusum_step",
    "evaluate",
    "evaluate_rules",
    "skipped_detectors",
]

log = logging.getLogger(__name__)

#: How far back detectors look for probe outcomes and past firing periods (orders: the window the cycle loads).
DETECTOR_HISTORY = timedelta(days=7)
#: Signals a statistical detector can watch: order outcomes, or probe outcomes.
DETECTOR_SIGNALS = ("success_ratio", "probe_success_ratio")
PROBE_DETECTOR_SIGNALS = ("probe_success_ratio",)

AlertKey = tuple[str, str]


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
    #: Channels paymon holds below their baseline, as their ``success_ratio`` alerts are judged meanwhile
    #: (``monitor.alerts.recovery``).
    recovering: Mapping[str, Recovering] = field(default_factory=dict)
    #: Per channel, its orders' creation, success and decided-failure times, for ``detector: early``.
    order_times: Mapping[str, OrderTimes] = field(default_factory=dict)
    #: The newest event time in the order data (≤ ``now``): how far the early detector's evidence is known.
    known_until: datetime | None = None


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's result: the alert states after it, the events to announce (``loud``) and those only to
    record (``quiet``: muted by maintenance, a silence or inhibition, or a rule without ``notify``)."""

    states: dict[AlertKey, AlertState]
    loud: list[AlertEvent]
    quiet: list[AlertEvent]
    specs: dict[str, RuleSpec]

    @property
    def events(self) -> list[AlertEvent]:
        return self.loud + self.quiet


def evaluate(cfg: LoadedConfig, snap: Snapshot, prev: Mapping[AlertKey, AlertState], *,
             muted: Callable[[str, str], bool] = lambda rule, channel: False) -> Evaluation:
    """Rules and detectors → inhibition → routing of the events. ``muted(rule, channel)`` says what the caller
    knows is muted besides inhibition (maintenance windows, silences). Pure."""
    events, evaluated, specs = evaluate_rules(cfg, snap, prev)
    inhibited = inhibited_by({r.name: r.inhibits for r in cfg.monitor.rules}, evaluated)
    announce = {r.name for r in cfg.monitor.rules if any(a.kind == "notify" for a in r.actions)}
    routed: Routed = route(events, prev, evaluated, announce=announce, specs=specs, now=snap.now,
                           muted=lambda rule, ch: muted(rule, ch) or (rule, ch) in inhibited)
    return Evaluation(routed.states, routed.loud, routed.quiet, specs)


def skipped_detectors(cfg: LoadedConfig) -> list[Rule]:
    """Detector rules on a signal no detector can watch: :func:`evaluate_rules` skips them."""
    return [r for r in cfg.monitor.rules if r.detector is not None and r.signal not in DETECTOR_SIGNALS]


def evaluate_rules(cfg: LoadedConfig, snap: Snapshot, prev: Mapping[AlertKey, AlertState]) -> tuple[
    list[AlertEvent], dict[AlertKey, AlertState], dict[str, RuleSpec]
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
                                                      d.min_orders, cfg)
                        specs.setdefault(rule.name, spec)
                        current[key] = after
                        events.extend(evs)
            continue
        spec = _threshold_spec(rule)
        specs[rule.name] = spec
        window = rule.window or "15m"
        for ch in cfg.channels:
            if not rule.applies_to(ch):
                continue
            q = Query(ch.id, window, parse_duration(window).total_seconds(), rule.probe or "query",
                      rule.min_orders if rule.min_orders is not None else d.min_orders)
            value = signal_value(rule.signal, snap.signals, q)
            rec = snap.recovering.get(ch.id) if rule.signal == "success_ratio" else None
            if rec is not None:  # held down by paymon: judged on the orders since, not the window's
                value = judged_ratio(rec, _recovery_gate(cfg, rule))
            before = prev.get((rule.name, ch.id)) or AlertState(rule.name, ch.id)
            after, evs = step(before, spec, value, snap.now)
            if rec is not None:
                after, evs = _on_recovery(cfg, spec, ch.id, snap, before, after, evs)
            current[(rule.name, ch.id)] = after
            events.extend(evs)
    return events, current, specs


def _threshold_spec(rule: Rule) -> RuleSpec:
    assert rule.threshold is not None  # config guarantees it without a detector
    return RuleSpec(
        name=rule.name, signal=rule.signal, op=rule.op, threshold=rule.threshold, severity=rule.severity,
        recover=rule.recover, for_=rule.for_, repeat=rule.repeat, max_reminders=rule.max_reminders,
        actions=tuple(a.kind for a in rule.actions),
    )


def _recovery_gate(cfg: LoadedConfig, rule: Rule) -> int:
    """How many settled orders since paymon acted judge a ``success_ratio`` rule on a channel it holds down."""
    explore = cfg.monitor.routing.explore
    if explore is not None:
        return explore.min_orders
    return rule.min_orders if rule.min_orders is not None else cfg.monitor.defaults.min_orders


def _on_recovery(cfg: LoadedConfig, spec: RuleSpec, channel: str, snap: Snapshot, before: AlertState,
                 after: AlertState, events: list[AlertEvent]) -> tuple[AlertState, list[AlertEvent]]:
    """A ``success_ratio`` alert still firing on a channel paymon holds below its baseline, without exploration:
    resolved when its probes pass and no order since has failed or is still open (``monitor.alerts.recovery``)."""
    rec = snap.recovering.get(channel)
    if (rec is None or before.state != "firing" or after.state != "firing"
            or not resolves_on_probes(rec, explore=cfg.monitor.routing.explore is not None)):
        return after, events
    resolved = AlertState(spec.name, channel, "inactive", value=rec.ratio, detector=after.detector)
    return resolved, [make_event("resolved", spec, channel, snap.now, rec.ratio)]


def cusum_step(rule: Rule, channel: str, snap: Snapshot, prev: AlertState, default_min_orders: int,
               cfg: LoadedConfig) -> tuple[RuleSpec, AlertState, list[AlertEvent]]:
    """One evaluation of a ``detector: cusum`` rule on one channel (see ``monitor.alerts.detectors``).

    The CUSUM reads the orders decided (or, for ``probe_success_ratio``, the probe results) since its last update
    against the channel's own baseline (its firing periods left out); it fires when it alarms. The CUSUM restarts
    after an alarm, so a firing alert resolves on the data instead: when the ratio over the rule's window (default
    15m) is back at least half-way between the design drop and the baseline. The detector's state travels in the
    alert state. On a ``success_ratio`` rule, a channel paymon holds below its baseline is judged on the orders
    since it acted (``monitor.alerts.recovery``), not on late outcomes of the orders that made it act.
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
    early = early_params(params) if params is not None and rule.detector == "early" else None
    threshold = early.h if early is not None else params.h if params is not None else 0.0
    spec = RuleSpec(
        name=rule.name, signal=f"{rule.signal}_{rule.detector or 'cusum'}", op=">=", threshold=threshold,
        severity=rule.severity, for_=rule.for_, repeat=rule.repeat, max_reminders=rule.max_reminders,
        actions=tuple(a.kind for a in rule.actions),
    )
    rec = snap.recovering.get(channel) if rule.signal == "success_ratio" else None
    value: float | None = None
    if params is not None:
        since = state.updated_at
        seen = rec.outcomes if rec is not None else outcomes  # held down: orders since paymon acted only
        fresh = [ok for at, ok in seen if since is not None and since < at.timestamp() <= now.timestamp()]
        if early is not None:
            timeout = _pay_timeout(cfg, channel)
            times = snap.order_times.get(channel, OrderTimes.empty())
            delays = learn_pay_delays(times, timeout.total_seconds(), firing)
            if rec is not None:  # held down: orders since paymon acted only
                times = times.after(rec.since.timestamp() - 1e-6)
            state, alarmed, statistic = early_update(state, times, early, delays, now, snap.known_until or now)
        else:
            state, alarmed, statistic = update(state, fresh, params, now)
        value = statistic
        if prev.state == "firing":
            window = rule.window or "15m"
            gate = rule.min_orders if rule.min_orders is not None else default_min_orders
            q = Query(channel, window, parse_duration(window).total_seconds(), probe, 0 if on_probes else gate)
            ratio = signal_value(rule.signal, snap.signals, q)
            if rec is not None:  # held down by paymon: judged on the orders since, not the window's
                ratio = judged_ratio(rec, _recovery_gate(cfg, rule))
            value = 0.0 if ratio is not None and ratio >= (params.p0 + params.p1) / 2 else threshold
    state = replace(state, updated_at=now.timestamp())
    after, events = step(prev, spec, value, now)
    if rec is not None:
        after, events = _on_recovery(cfg, spec, channel, snap, prev, after, events)
    return spec, replace(after, detector=json.dumps(state.to_dict())), events


def _pay_timeout(cfg: LoadedConfig, channel: str) -> timedelta:
    """The channel's own pay timeout, else the default one."""
    own = next((c.pay_timeout for c in cfg.channels if c.id == channel), None)
    return own or cfg.monitor.defaults.pay_timeout
