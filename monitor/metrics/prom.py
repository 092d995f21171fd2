"""Every Prometheus metric paymon exports (SPEC §2.6), on an injected registry.

Labels come only from bounded sets (channel ids, probe types, outcomes, window labels, rule names); never order
ids or amounts. ``*_created`` series are not exported: they double the series count and nobody graphs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from monitor.metrics.stats import ChannelStats
from monitor.models import CHANNEL_STATES, ProbeResult

__all__ = ["Metrics"]

disable_created_metrics()  # type: ignore[no-untyped-call]

PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CALLBACK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Metrics:
    """paymon's metrics. Pass a fresh ``CollectorRegistry`` in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.probe_success = Gauge("paymon_probe_success", "1 if the last probe succeeded, else 0",
                                   ["channel", "probe"], registry=r)
        self.probe_duration = Histogram("paymon_probe_duration_seconds", "Probe duration",
                                        ["channel", "probe"], buckets=PROBE_BUCKETS, registry=r)
        self.probe_total = Counter("paymon_probe_total", "Probes run, by outcome",
                                   ["channel", "probe", "outcome"], registry=r)
        self.orders_total = Counter("paymon_orders_total", "Order outcomes seen", ["channel", "outcome"], registry=r)
        self.success_ratio = Gauge("paymon_success_ratio", "Order success ratio over the window",
                                   ["channel", "window"], registry=r)
        self.lost_order_ratio = Gauge("paymon_lost_order_ratio", "Lost-order ratio over the window",
                                      ["channel", "window"], registry=r)
        self.callback_latency = Histogram("paymon_callback_latency_seconds", "Callback arrival minus pay time",
                                          ["channel"], buckets=CALLBACK_BUCKETS, registry=r)
        self.pending_orders = Gauge("paymon_pending_orders", "Orders still waiting for payment", ["channel"],
                                    registry=r)
        self.unsettled_balance = Gauge("paymon_unsettled_balance", "Balance not yet settled", ["channel"],
                                       registry=r)
        self.routing_weight = Gauge("paymon_routing_weight", "Routing weight in the shared config", ["channel"],
                                    registry=r)
        self.channel_state = Gauge("paymon_channel_state", "1 for the channel's current state",
                                   ["channel", "state"], registry=r)
        self.alerts_firing = Gauge("paymon_alerts_firing", "1 while an alert fires", ["rule", "channel", "severity"],
                                   registry=r)
        self.notifications_total = Counter("paymon_notifications_total", "Notifications by result",
                                           ["sink", "result"], registry=r)
        self.notification_queue = Gauge("paymon_notification_queue", "Notifications waiting", ["sink"], registry=r)
        self.ingest_events_total = Counter("paymon_ingest_events_total", "Ingested events by result",
                                           ["source", "result"], registry=r)
        self.ingest_lag = Gauge("paymon_ingest_lag_seconds", "Seconds since the source last had new data",
                                ["source"], registry=r)
        self.leader = Gauge("paymon_leader", "1 when this instance acts (leader)", registry=r)
        self.funnel = Gauge("paymon_funnel_orders", "Orders created in the window that reached each stage",
                            ["channel", "window", "stage"], registry=r)
        self.reconcile_total = Counter("paymon_reconcile_total", "Reconciliation questions by answer",
                                       ["channel", "result"], registry=r)
        self.notify_replays_total = Counter("paymon_notify_replays_total", "Replayed notifies by result",
                                            ["channel", "result"], registry=r)

    def observe_probe(self, r: ProbeResult) -> None:
        self.probe_success.labels(r.channel, r.probe).set(1 if r.ok else 0)
        self.probe_duration.labels(r.channel, r.probe).observe(r.latency_s)
        self.probe_total.labels(r.channel, r.probe, r.outcome).inc()
        if r.probe == "balance" and r.ok and r.value is not None:
            self.unsettled_balance.labels(r.channel).set(r.value)

    def set_stats(self, stats: Mapping[tuple[str, str], ChannelStats], pending_window: str) -> None:
        """Publish window gauges; a window without a value is removed rather than shown as 0."""
        for (channel, window), s in stats.items():
            for gauge, value in ((self.success_ratio, s.success_ratio), (self.lost_order_ratio, s.lost_order_ratio)):
                if value is None:
                    try:
                        gauge.remove(channel, window)
                    except KeyError:
                        pass
                else:
                    gauge.labels(channel, window).set(value)
            if window == pending_window:
                self.pending_orders.labels(channel).set(s.pending)
            for stage, n in (("created", s.orders), ("redirected", s.redirected), ("paid", s.paid),
                             ("callback", s.callback), ("delivered", s.delivered)):
                self.funnel.labels(channel, window, stage).set(n)

    def set_channel_states(self, states: Mapping[str, str]) -> None:
        for channel, current in states.items():
            for state in CHANNEL_STATES:
                self.channel_state.labels(channel, state).set(1 if state == current else 0)

    def set_alerts(self, firing: Iterable[tuple[str, str, str]], known: Iterable[tuple[str, str, str]]) -> None:
        """Set 1 for firing (rule, channel, severity) triples and 0 for the other known ones."""
        on = set(firing)
        for key in set(known) | on:
            self.alerts_firing.labels(*key).set(1 if key in on else 0)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        for channel, w in weights.items():
            self.routing_weight.labels(channel).set(w)
