"""Every Prometheus metric paymon exports, computed at scrape time by one custom collector.

prometheus-client recommends a custom collector for values that mirror state held elsewhere: ``collect()`` builds
each family afresh from what paymon knows, so a series exists exactly as long as its subject does. Two kinds of
state feed it:

- the **view** the last cycle produced (:class:`CycleView`: window stats, channel states, alerts, weights, queue
  depths, the configured channels, sources and sinks), replaced whole by :meth:`Metrics.publish`;
- **event counts** that only the moment knows (probes run, orders counted once, notifications, ingested events,
  reconciliation answers, replays), kept in memory by :class:`Metrics`' ``observe_*``/``count_*`` methods.

When a view is published, event series of channels, sources and sinks it no longer names are dropped, so a channel
removed from the config disappears from ``/metrics`` after the next cycle. A scrape never touches the database.

Counters of the configured channels, sources and sinks exist at 0 from the start (:meth:`Metrics.declare`):
``rate()`` and ``increase()`` need a first sample before the first event, or the first event is never seen.
The registry also holds prometheus-client's standard ``process_*`` metrics and ``paymon_build_info{version}``.

Labels come only from bounded sets (channel ids, probe types, outcomes, window labels, rule names); never order
ids or amounts. ``*_created`` series are not exported: they double the series count and nobody graphs them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.clock import Clock
from monitor.metrics.counting import OUTCOMES as ORDER_OUTCOMES
from monitor.models import CHANGE_KINDS, CHANNEL_STATES, OUTCOMES, ChannelStats, ProbeResult

__all__ = ["CALLBACK_BUCKETS", "PROBE_BUCKETS", "CycleView", "Metrics"]

PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CALLBACK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_FUNNEL = ("created", "redirected", "paid", "callback", "delivered")
#: The result label values each counter starts with at 0 (beside its channel, source or sink).
RECONCILE_RESULTS = ("paid", "held", "refunded", "closed", "unpaid", "unknown", "not_found", "error")
REPLAY_RESULTS = ("acknowledged", "rejected", "failed", "refused")
NOTIFY_RESULTS = ("sent", "retried", "failed")
INGEST_RESULTS = ("accepted", "duplicate", "rejected")

Labels = tuple[str, ...]


@dataclass(frozen=True)
class CycleView:
    """What the last cycle knew, as the metrics show it. Built by the pipeline, read by scrapes only."""

    at: datetime
    #: The configured channel ids: event series of any other channel are dropped on publish.
    channels: frozenset[str]
    stats: Mapping[tuple[str, str], ChannelStats] = field(default_factory=dict)
    #: The window whose pending count is ``paymon_pending_orders``.
    pending_window: str = "15m"
    states: Mapping[str, str] = field(default_factory=dict)
    #: (rule, channel, severity) → firing? for every known alert.
    alerts: Mapping[tuple[str, str, str], bool] = field(default_factory=dict)
    weights: Mapping[str, int] = field(default_factory=dict)
    #: Outbox depth per configured sink.
    queue: Mapping[str, int] = field(default_factory=dict)
    #: When each source last had new data (ingest lag = scrape time minus this).
    last_data: Mapping[str, datetime] = field(default_factory=dict)
    #: Open held funds per channel (the channel holds a buyer's money, the shop has no order); channels with none
    #: are left out (their gauge reads 0).
    held_funds: Mapping[str, int] = field(default_factory=dict)
    #: Audited weight changes per (channel, kind) so far (``CHANGE_KINDS``), by paymon and by operators alike.
    weight_changes: Mapping[tuple[str, str], int] = field(default_factory=dict)


class _Histogram:
    """Bucket counts, sum and count of one labelled histogram series."""

    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*(str(float(b)) for b in self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


class Metrics(Collector):
    """paymon's metrics, registered as one collector. Pass a fresh ``CollectorRegistry`` in tests; pass the clock
    so ``paymon_ingest_lag_seconds`` grows between cycles (without one it is measured at the last cycle)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Clock | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self._lock = threading.Lock()  # scrapes run on the HTTP server's thread
        self._view: CycleView | None = None
        self._counters: dict[str, dict[Labels, float]] = {name: {} for name, *_ in _COUNTERS}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {name: {} for name, *_ in _HISTOGRAMS}
        self._last_probe: dict[tuple[str, str], ProbeResult] = {}
        self.registry.register(self)
        try:
            ProcessCollector(registry=self.registry)
        except ValueError:  # the registry has them already (prometheus-client's default registry does)
            pass

    def declare(self, *, channels: Iterable[str] = (), probes: Iterable[tuple[str, str]] = (),
                sources: Iterable[str] = (), sinks: Iterable[str] = ()) -> None:
        """Start the counters of these channels, (channel, probe) pairs, sources and sinks at 0 for every
        result they can count (counts already made are kept)."""
        zero: list[tuple[str, Labels]] = []
        for ch in channels:
            zero += [("paymon_orders_total", (ch, o)) for o in ORDER_OUTCOMES]
            zero += [("paymon_reconcile_total", (ch, r)) for r in RECONCILE_RESULTS]
            zero += [("paymon_notify_replays_total", (ch, r)) for r in REPLAY_RESULTS]
        for ch, probe in probes:
            zero += [("paymon_probe_total", (ch, probe, o)) for o in OUTCOMES]
        for source in sources:
            zero += [("paymon_ingest_events_total", (source, r)) for r in INGEST_RESULTS]
        for sink in sinks:
            zero += [("paymon_notifications_total", (sink, r)) for r in NOTIFY_RESULTS]
        with self._lock:
            for name, labels in zero:
                self._counters[name].setdefault(labels, 0.0)

    # -- events ----------------------------------------------------------------------------------------------

    def observe_probe(self, r: ProbeResult) -> None:
        """One probe result: its outcome count, its duration, and the last result per (channel, probe)."""
        with self._lock:
            self._add("paymon_probe_total", (r.channel, r.probe, r.outcome))
            self._observe("paymon_probe_duration_seconds", (r.channel, r.probe), r.latency_s)
            self._last_probe[(r.channel, r.probe)] = r

    def count_orders(self, counts: Mapping[tuple[str, str], int], latencies: Iterable[tuple[str, float]]) -> None:
        """Order outcomes counted once (channel, outcome) and new callback latencies (negative ones as 0)."""
        with self._lock:
            for key, n in counts.items():
                self._add("paymon_orders_total", key, n)
            for channel, seconds in latencies:
                self._observe("paymon_callback_latency_seconds", (channel,), max(0.0, seconds))

    def count_ingest(self, source: str, result: str, n: int) -> None:
        with self._lock:
            self._add("paymon_ingest_events_total", (source, result), n)

    def count_notification(self, sink: str, result: str) -> None:
        with self._lock:
            self._add("paymon_notifications_total", (sink, result))

    def count_reconcile(self, channel: str, result: str) -> None:
        with self._lock:
            self._add("paymon_reconcile_total", (channel, result))

    def count_replay(self, channel: str, result: str) -> None:
        """One replay decision: ``acknowledged``, ``rejected`` (the shop said no), ``failed`` (no answer), or
        ``refused`` (paymon did not send it: the channel no longer says plainly paid)."""
        with self._lock:
            self._add("paymon_notify_replays_total", (channel, result))

    def _add(self, name: str, labels: Labels, n: float = 1) -> None:
        series = self._counters[name]
        series[labels] = series.get(labels, 0.0) + n

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        series = self._histograms[name]
        if labels not in series:
            series[labels] = _Histogram(_BUCKETS[name])
        series[labels].observe(value)

    # -- the last cycle's view -------------------------------------------------------------------------------

    def publish(self, view: CycleView) -> None:
        """Replace the view; forget event series of channels, sources and sinks the view no longer has."""
        with self._lock:
            self._view = view
            keep = {"channel": view.channels, "source": frozenset(view.last_data), "sink": frozenset(view.queue)}
            for name, _, labels in _COUNTERS:
                self._counters[name] = {k: v for k, v in self._counters[name].items() if _kept(labels, k, keep)}
            for name, _, labels in _HISTOGRAMS:
                self._histograms[name] = {k: v for k, v in self._histograms[name].items() if _kept(labels, k, keep)}
            self._last_probe = {k: v for k, v in self._last_probe.items() if k[0] in view.channels}

    # -- scrape ----------------------------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # families depend on state; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = [*self._event_families(), *self._probe_gauges(), *self._view_families()]
        build = GaugeMetricFamily("paymon_build_info", "paymon's version; always 1", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield build
        yield from families

    def _event_families(self) -> Iterator[Metric]:
        for name, doc, labels in _COUNTERS:
            fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            for key, value in sorted(self._counters[name].items()):
                fam.add_metric(list(key), value)
            yield fam
        for name, doc, labels in _HISTOGRAMS:
            hist = HistogramMetricFamily(name, doc, labels=labels)
            for key, h in sorted(self._histograms[name].items()):
                hist.add_metric(list(key), h.cumulative(), h.total)
            yield hist

    def _probe_gauges(self) -> Iterator[Metric]:
        success = GaugeMetricFamily("paymon_probe_success", "1 if the last probe succeeded, else 0",
                                    labels=["channel", "probe"])
        balance = GaugeMetricFamily("paymon_unsettled_balance", "Balance not yet settled", labels=["channel"])
        for (channel, probe), r in sorted(self._last_probe.items()):
            success.add_metric([channel, probe], 1.0 if r.ok else 0.0)
        balances = {ch: r.value for (ch, probe), r in self._last_probe.items()
                    if probe == "balance" and r.ok and r.value is not None}
        for channel, value in sorted(balances.items()):
            balance.add_metric([channel], value)
        yield success
        yield balance

    def _view_families(self) -> Iterator[Metric]:
        v = self._view
        g = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in _GAUGES}
        if v is not None:
            _window_gauges(g, v)
            for channel, current in sorted(v.states.items()):
                for state in CHANNEL_STATES:
                    g["paymon_channel_state"].add_metric([channel, state], 1.0 if state == current else 0.0)
            for key, firing in sorted(v.alerts.items()):
                g["paymon_alerts_firing"].add_metric(list(key), 1.0 if firing else 0.0)
            for channel, weight in sorted(v.weights.items()):
                g["paymon_routing_weight"].add_metric([channel], float(weight))
            for sink, depth in sorted(v.queue.items()):
                g["paymon_notification_queue"].add_metric([sink], float(depth))
            now = self.clock.now() if self.clock is not None else v.at
            for source, last in sorted(v.last_data.items()):
                g["paymon_ingest_lag_seconds"].add_metric([source], max(0.0, (now - last).total_seconds()))
            for channel in sorted(v.channels):
                g["paymon_held_funds"].add_metric([channel], float(v.held_funds.get(channel, 0)))
            g["paymon_leader"].add_metric([], 1.0)  # one instance acts; leader election is not built yet
        yield from g.values()
        yield _weight_changes(v)


def _window_gauges(g: Mapping[str, GaugeMetricFamily], v: CycleView) -> None:
    """Ratios per (channel, window) (a window without a value has no series, never a 0), pending orders of the
    pending window, and the funnel."""
    for (channel, window), s in sorted(v.stats.items()):
        if s.success_ratio is not None:
            g["paymon_success_ratio"].add_metric([channel, window], s.success_ratio)
        if s.lost_order_ratio is not None:
            g["paymon_lost_order_ratio"].add_metric([channel, window], s.lost_order_ratio)
        if window == v.pending_window:
            g["paymon_pending_orders"].add_metric([channel], float(s.pending))
        for stage, n in zip(_FUNNEL, (s.orders, s.redirected, s.paid, s.callback, s.delivered), strict=True):
            g["paymon_funnel_orders"].add_metric([channel, window, stage], float(n))


def _weight_changes(v: CycleView | None) -> Metric:
    """``paymon_routing_changes_total``: a counter read from the audit (it survives restarts and counts changes
    made by ``paymon weights`` in another process); every configured channel starts at 0 for every kind."""
    fam = CounterMetricFamily("paymon_routing_changes", "Audited routing weight changes, by kind",
                              labels=["channel", "reason"])
    if v is not None:
        counts = {(ch, k): 0 for ch in v.channels for k in CHANGE_KINDS}
        counts.update({key: n for key, n in v.weight_changes.items() if key[0] in v.channels})
        for (channel, kind), n in sorted(counts.items()):
            fam.add_metric([channel, kind], float(n))
    return fam


def _kept(labels: Sequence[str], key: Labels, keep: Mapping[str, frozenset[str]]) -> bool:
    """Whether a series survives: each of its channel/source/sink labels is still configured."""
    return all(key[i] in keep[label] for i, label in enumerate(labels) if label in keep)


#: (name, help, labels) of the counters, the histograms and the gauges of the view.
_COUNTERS: tuple[tuple[str, str, list[str]], ...] = (
    ("paymon_probe_total", "Probes run, by outcome", ["channel", "probe", "outcome"]),
    ("paymon_orders_total", "Order outcomes seen", ["channel", "outcome"]),
    ("paymon_notifications_total", "Notifications by result", ["sink", "result"]),
    ("paymon_ingest_events_total", "Ingested events by result", ["source", "result"]),
    ("paymon_reconcile_total", "Reconciliation questions by answer", ["channel", "result"]),
    ("paymon_notify_replays_total", "Replayed notifies by result", ["channel", "result"]),
)
_HISTOGRAMS: tuple[tuple[str, str, list[str]], ...] = (
    ("paymon_probe_duration_seconds", "Probe duration", ["channel", "probe"]),
    ("paymon_callback_latency_seconds", "Callback arrival minus pay time", ["channel"]),
)
_BUCKETS: dict[str, tuple[float, ...]] = {
    "paymon_probe_duration_seconds": PROBE_BUCKETS,
    "paymon_callback_latency_seconds": CALLBACK_BUCKETS,
}
_GAUGES: tuple[tuple[str, str, list[str]], ...] = (
    ("paymon_success_ratio", "Order success ratio over the window", ["channel", "window"]),
    ("paymon_lost_order_ratio", "Lost-order ratio over the window", ["channel", "window"]),
    ("paymon_pending_orders", "Orders still waiting for payment", ["channel"]),
    ("paymon_routing_weight", "Routing weight the shop reads now", ["channel"]),
    ("paymon_channel_state", "1 for the channel's current state", ["channel", "state"]),
    ("paymon_alerts_firing", "1 while an alert fires", ["rule", "channel", "severity"]),
    ("paymon_notification_queue", "Notifications waiting", ["sink"]),
    ("paymon_ingest_lag_seconds", "Seconds since the source last had new data", ["source"]),
    ("paymon_leader", "1 when this instance acts (leader)", []),
    ("paymon_held_funds", "Orders whose buyer's money the channel holds without completing the payment (open)",
     ["channel"]),
    ("paymon_funnel_orders", "Orders created in the window that reached each stage", ["channel", "window", "stage"]),
)
