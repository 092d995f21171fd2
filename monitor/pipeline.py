"""One evaluation cycle: ingest → lost orders → snapshot → evaluation → alerts → routing → notify → metrics.

The one place the stages chain. Each stage lives in its own module and is pure or owns one kind of I/O: the
snapshot (``monitor.snapshot``), evaluation (``monitor.alerts.evaluate``, shared with ``paymon backtest``), the
routing stage (``monitor.routing.stage``), delivery (``monitor.alerts.dispatch``) and the status views
(``monitor.status``). ``Pipeline.cycle`` is what the daemon runs on its schedule and what ``paymon once`` runs once.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.alerts.dispatch import Sink, deliver_in_order, deliver_outbox
from monitor.alerts.evaluate import Evaluation, Snapshot, evaluate, skipped_detectors
from monitor.alerts.probe_reasons import with_probe_reasons
from monitor.alerts.render import duration
from monitor.clock import Clock
from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.errors import LockedError
from monitor.ingest import Source
from monitor.locks import routing_lock
from monitor.metrics.counting import OnceCounter
from monitor.metrics.prom import CycleView, Metrics
from monitor.metrics.stats import order_facts
from monitor.models import (
    PROBE_TYPES,
    AlertEvent,
    AlertState,
    ChannelStats,
    HeldFunds,
    IngestResult,
    LostOrder,
    WeightChange,
)
from monitor.reconcile.reporting import LostReport, report_held, report_lost
from monitor.routing.base import WeightSink
from monitor.routing.stage import RoutingOutcome, RoutingStage
from monitor.snapshot import in_maintenance, read_snapshot
from monitor.status import channel_states
from monitor.store import Store
from monitor.store.reconcile import ReconcileStore

__all__ = ["CycleReport", "LostReport", "Pipeline"]

log = logging.getLogger(__name__)


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
    #: Held funds found (and recorded ones released) in this cycle.
    held_funds: list[HeldFunds] = field(default_factory=list)
    released: list[HeldFunds] = field(default_factory=list)


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
        weights: Sequence[WeightSink] = (),
        sources: Sequence[Source] = (),
        webhooks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.sinks = dict(sinks)
        self.sources = list(sources)
        #: Routing webhooks by outbox queue: they get the weight changes (not alerts), delivered in order.
        self.webhooks = dict(webhooks or {})
        self.routing = RoutingStage(cfg, store, weights, list(self.sinks) + list(self.webhooks))
        self.lost = ReconcileStore(store)
        # The reconciler reports right after recording its answers (``Reconciler.run``), maybe while a cycle runs
        # in another thread: one report at a time.
        self._report_lock = threading.Lock()
        self._counter = OnceCounter()
        started = clock.now()
        #: Each source's ``source`` metric label (its configured name, else kind and file name; not a path).
        self._labels = {s.source_id: s.label for s in cfg.monitor.sources}
        #: When each source last had new data (start time until then): ``paymon_ingest_lag_seconds``.
        self._last_data = {self._label(src): started for src in self.sources}
        self.metrics.declare(channels=[c.id for c in cfg.channels], sources=list(self._last_data),
                             sinks=[*self.sinks, *self.webhooks],
                             probes=[(c.id, p) for c in cfg.channels for p in PROBE_TYPES
                                     if getattr(c.probes, p) is not None])
        for rule in skipped_detectors(cfg):
            log.warning("rule %s: detector %s watches success_ratio or probe_success_ratio; rule skipped",
                        rule.name, rule.detector)

    def _label(self, src: Source) -> str:
        """The ``source`` metric label of a running source (its id when the config does not list it)."""
        return self._labels.get(src.source_id, src.source_id)

    def close(self) -> None:
        """Release the sources' open files, the weight sinks' and the webhooks' connections."""
        for src in self.sources:
            src.close()
        for sink in self.routing.sinks:
            sink.close()
        for hook in self.webhooks.values():
            close = getattr(hook, "close", None)
            if close is not None:
                close()

    # -- the cycle -------------------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """Ingest, evaluate, act, notify; every step's writes are committed before the next starts."""
        ingested = self.ingest()
        now = self.clock.now()
        reported = self.report_lost(now)
        snap = read_snapshot(self.cfg, self.store, now)
        maintenance = in_maintenance(self.cfg, now)
        prev = self.store.alert_states()
        result = self.evaluate(snap, prev, maintenance)
        routed = self.route(result.states, now, maintenance, snap.stats)
        self.deliver()
        states = channel_states(self.cfg, snap, result.states, maintenance)
        self.publish(snap, result.states, states, routed)
        return CycleReport(now, ingested, result.events, routed.changes, routed.held, reported.found,
                           reported.recovered, states, snap.stats, reported.held, reported.released)

    # -- stages ----------------------------------------------------------------------------------------------

    def ingest(self) -> IngestResult:
        """Poll every source once; a source that cannot be read costs its own poll only."""
        total = IngestResult()
        for src in self.sources:
            try:
                r = src.poll()
            except OSError as exc:
                log.warning("source %s: %s", src.source_id, exc)
                r = IngestResult()
            for result in ("accepted", "duplicate", "rejected"):
                if n := getattr(r, result):
                    self.metrics.count_ingest(self._label(src), result, n)
            if r.accepted or r.duplicate or r.rejected:
                self._last_data[self._label(src)] = self.clock.now()
            total += r
        return total

    def report_lost(self, now: datetime) -> LostReport:
        """Record and announce, once each, the orders that just became lost and those the shop since completed,
        and held funds found and released. Thread-safe: the reconciler calls it too, right after its answers are
        recorded, so a loss is reported (and replayed) in the round that finds it."""
        d, rc = self.cfg.monitor.defaults, self.cfg.monitor.reconcile
        sinks = list(self.sinks)
        with self._report_lock:
            found, recovered = report_lost(self.lost, now=now, deadline=d.callback_deadline, since=now - rc.horizon,
                                           sinks=sinks)
            held, released = report_held(self.lost, now=now, sinks=sinks)
        for lo in found:
            when = (f"paid at the channel {lo.channel_paid_at.isoformat()}" if lo.channel_paid_at else
                    f"no pay time from the channel, paymon learned of it at {lo.paid_learned_at.isoformat()}"
                    if lo.paid_learned_at else "no pay time from the channel")
            log.warning("lost order %s on %s: %s (%s), no verified callback within %s", lo.order_id, lo.channel,
                        when, lo.evidence, duration(d.callback_deadline.total_seconds()))
        for lo in recovered:
            log.info("lost order %s on %s is now completed in the shop", lo.order_id, lo.channel)
        for h in held:
            log.warning("held funds: order %s on %s: the channel holds the buyer's money (status %s), the shop has "
                        "no order; paymon saw it at %s; an operator must look", h.order_id, h.channel, h.status,
                        h.seen_at.isoformat())
        for h in released:
            log.info("held funds of order %s on %s released (%s)", h.order_id, h.channel, h.release)
        return LostReport(found, recovered, held, released)

    def evaluate(self, snap: Snapshot, prev: Mapping[tuple[str, str], AlertState],
                 maintenance: Mapping[str, MaintenanceWindow]) -> Evaluation:
        """The shared evaluation step, muted by maintenance windows and silences; its states and events are
        saved (announced events queued for every sink, muted ones recorded only) before routing reads them."""
        silenced = {(s.channel, s.rule) for s in self.store.active_silences()}
        result = evaluate(self.cfg, snap, prev, muted=lambda rule, ch: (
            ch in maintenance or (ch, None) in silenced or (ch, rule) in silenced))
        changed = [s for key, s in result.states.items() if prev.get(key) != s]
        loud = with_probe_reasons(result.loud, self.cfg.monitor.rules, self.store.probe_results)
        self.store.save_alerts(changed, loud, list(self.sinks))
        if result.quiet:
            self.store.save_alerts([], result.quiet, [])
        return result

    def route(self, states: Mapping[tuple[str, str], AlertState], now: datetime,
              maintenance: Mapping[str, MaintenanceWindow],
              stats: Mapping[tuple[str, str], ChannelStats] | None = None) -> RoutingOutcome:
        """The routing stage, under the store's routing lock: ``paymon weights set|restore`` may be changing a
        weight right now, and neither may write back a stale copy of the other's rows. Busy too long: this cycle
        leaves the weights alone (the next one catches up)."""
        try:
            with routing_lock(self.cfg.monitor.storage.url):
                return self.routing.run(states, now, maintenance, stats)
        except LockedError as exc:
            log.warning("routing: %s", exc)
            return RoutingOutcome(held=[str(exc)])

    def deliver(self) -> None:
        """Send what the outbox holds (this cycle's notifications and earlier ones due for a retry)."""
        deliver_outbox(self.store, self.sinks, group_wait=self.cfg.monitor.notify.group_wait,
                       on_result=self.metrics.count_notification)
        deliver_in_order(self.store, self.webhooks, on_result=self.metrics.count_notification)

    def publish(self, snap: Snapshot, alerts: Mapping[tuple[str, str], AlertState], states: Mapping[str, str],
                routed: RoutingOutcome) -> None:
        """Hand the metrics this cycle's view, and count the orders decided since the last cycle once."""
        severity = {r.name: r.severity for r in self.cfg.monitor.rules}
        channels = frozenset(c.id for c in self.cfg.channels)
        labels = list(self.cfg.monitor.defaults.windows)
        depth = self.store.outbox_depth()
        if snap.judged is not None:
            counts, latencies = self._counter.step(order_facts(snap.judged))
            self.metrics.count_orders(counts, [(ch, s) for ch, s in latencies if not math.isnan(s)])
        self.metrics.publish(CycleView(
            at=snap.now, channels=channels, stats=snap.stats,
            pending_window=labels[0] if labels else "15m", states=states,
            alerts={(rule, ch, severity.get(rule, "warning")): s.state == "firing" for (rule, ch), s in alerts.items()
                    if rule in severity and ch in channels},
            weights=routed.weights, queue={sink: depth.get(sink, 0) for sink in [*self.sinks, *self.webhooks]},
            last_data=dict(self._last_data), held_funds=self.lost.open_held_counts(),
            weight_changes=self.store.weight_change_counts(),
        ))

    def prune(self) -> tuple[int, int]:
        """Apply ``storage.retention``; returns (probe results, orders) deleted."""
        r = self.cfg.monitor.storage.retention
        deleted = self.store.prune(probes=r.probes, orders=r.orders)
        self.lost.prune(self.clock.now() - r.orders)
        if any(deleted):
            log.info("retention: deleted %d probe results and %d orders", *deleted)
        return deleted
