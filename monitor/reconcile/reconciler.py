"""The reconciler: asks each channel about orders the shop still thinks unpaid, and (optionally) replays the
notifies of lost orders.

One :meth:`Reconciler.run` is one round (the daemon runs it every ``reconcile.every``; ``paymon once`` once):

1. for every channel with a querier, the orders due a question (created between ``horizon`` and ``older_than``
   ago, unpaid in the shop, asked again only when they have doubled their age since the last question), newest
   first, at most ``reconcile.per_round`` per channel, at most ``reconcile.rate`` questions per second per
   channel, channels in parallel;
2. the answers are stored: a paid order gets the channel's pay time, and once its callback deadline passes
   without a verified callback the pipeline reports it lost, by id (``reporting.report_lost``);
3. with ``replay_notify`` on, every open lost order of a channel whose protocol lets the merchant key sign
   notifies (and whose ``notify_url`` is configured) gets one replay: asked again (the channel must still say
   paid), claimed in the audit table *before* sending (a crash never replays twice), sent, and the answer kept.

A channel that fails (timeout, bad signature, maintenance…) costs only its own round: the orders stay due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.clients.base import ProbeContext, ProbeFailure
from monitor.clock import Clock
from monitor.config import ChannelConfig, LoadedConfig
from monitor.metrics.prom import Metrics
from monitor.plugins import build_plugins
from monitor.reconcile.base import ChannelOrder, Querier, QuerierFactory, Replayer
from monitor.store import Store
from monitor.store.reconcile import CheckAnswer, ReconcileStore

__all__ = ["MAX_FAILURES", "ReconcileReport", "Reconciler", "build_queriers"]

log = logging.getLogger(__name__)

#: A channel that fails this many questions in a row is left alone until the next round (it is probably down;
#: asking about every order would only hammer it).
MAX_FAILURES = 3


@dataclass
class ReconcileReport:
    """What one round did: questions asked and their answers, failures per channel, replays sent."""

    asked: int = 0
    paid: list[str] = field(default_factory=list)
    unpaid: int = 0
    not_found: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    replayed: dict[str, bool] = field(default_factory=dict)


def build_queriers(channels: Sequence[ChannelConfig], registry: Mapping[str, QuerierFactory]) -> tuple[
    dict[str, Querier], dict[str, str]
]:
    """A querier per channel whose kind has one; and, per channel that cannot be reconciled, why."""
    return build_plugins(channels, registry, "{kind} has no order query paymon can use")


class Reconciler:
    """Reconciliation rounds for one config. ``queriers`` maps channel ids to their queriers."""

    def __init__(self, cfg: LoadedConfig, store: Store, queriers: Mapping[str, Querier], *, clock: Clock,
                 metrics: Metrics) -> None:
        self.cfg = cfg
        self.store = ReconcileStore(store)
        self.queriers = dict(queriers)
        self.clock = clock
        self.metrics = metrics
        self.channels = {c.id: c for c in cfg.channels}

    async def run(self, contexts: Mapping[str, ProbeContext]) -> ReconcileReport:
        """One round over every channel (``contexts`` gives each its HTTP client, clock and redactor)."""
        rc = self.cfg.monitor.reconcile
        now = self.clock.now()
        due = await asyncio.to_thread(
            self.store.candidates, list(self.queriers), now=now, older_than=rc.older_than, horizon=rc.horizon,
            every=rc.every, per_channel=rc.per_round,
        )
        report = ReconcileReport()
        await asyncio.gather(*(self._channel(ch, [c.order_id for c in rows], contexts[ch], report)
                               for ch, rows in due.items() if rows and ch in contexts))
        if rc.replay_notify:
            await self._replay_lost(contexts, report)
        return report

    async def _channel(self, channel: str, order_ids: list[str], ctx: ProbeContext, report: ReconcileReport) -> None:
        querier = self.queriers[channel]
        gap = 1.0 / self.cfg.monitor.reconcile.rate
        batch = max(1, querier.batch)
        loop = asyncio.get_running_loop()
        failures = 0
        for i in range(0, len(order_ids), batch):
            chunk = order_ids[i : i + batch]
            started = loop.time()
            try:
                answers = await querier.lookup(chunk, ctx)
            except Exception as exc:  # noqa: BLE001 - one broken channel or querier must not stop the others
                failures += 1
                self.metrics.count_reconcile(channel, "error")
                if isinstance(exc, ProbeFailure):
                    report.errors[channel] = ctx.redactor(f"{exc.outcome}: {exc.detail}")
                    log.warning("reconcile %s: %s (those orders stay due)", channel, report.errors[channel])
                else:
                    report.errors[channel] = f"querier error: {type(exc).__name__}"
                    log.error("reconcile %s crashed: %s", channel, ctx.redactor(repr(exc)))
                if failures >= MAX_FAILURES:
                    log.warning("reconcile %s: %d failures in a row; the rest waits for the next round", channel,
                                failures)
                    return
            else:
                failures = 0
                checks = [self._answer(channel, oid, answers.get(oid), report) for oid in chunk]
                await asyncio.to_thread(self.store.record, channel, checks, self.clock.now())
            if i + batch < len(order_ids):
                await asyncio.sleep(max(0.0, gap * len(chunk) - (loop.time() - started)))

    def _answer(self, channel: str, order_id: str, got: ChannelOrder | None,
                report: ReconcileReport) -> CheckAnswer:
        report.asked += 1
        if got is None or not got.found:
            report.not_found += 1
            self.metrics.count_reconcile(channel, "not_found")
            return CheckAnswer(order_id, "not_found" if got is not None else "no_answer", False)
        if got.paid:
            report.paid.append(order_id)
            self.metrics.count_reconcile(channel, "paid")
            return CheckAnswer(order_id, got.status or "paid", True, got.paid_at, got.trade_no)
        report.unpaid += 1
        self.metrics.count_reconcile(channel, "unpaid")
        return CheckAnswer(order_id, got.status or "unpaid", False)

    async def _replay_lost(self, contexts: Mapping[str, ProbeContext], report: ReconcileReport) -> None:
        for lost in await asyncio.to_thread(self.store.lost_orders, open_only=True, unreplayed=True, limit=1000):
            ch = self.channels.get(lost.channel)
            querier = self.queriers.get(lost.channel)
            if ch is None or ch.notify_url is None or lost.channel not in contexts:
                continue
            if not isinstance(querier, Replayer):
                continue
            ctx = contexts[lost.channel]
            try:
                answer = (await querier.lookup([lost.order_id], ctx)).get(lost.order_id)
            except ProbeFailure as f:
                log.warning("replay %s/%s: cannot re-check the order: %s", lost.channel, lost.order_id,
                            ctx.redactor(f.detail))
                continue
            if answer is None or not answer.paid:
                log.warning("replay %s/%s: the channel no longer says paid (%s); not replayed", lost.channel,
                            lost.order_id, "unknown" if answer is None else answer.status)
                continue
            if not await asyncio.to_thread(self.store.begin_replay, lost.order_id, lost.channel, self.clock.now()):
                continue
            result = await querier.replay(answer, ch.notify_url, ctx)
            detail = ctx.redactor(result.detail)
            await asyncio.to_thread(self.store.finish_replay, lost.order_id, result.status_code,
                                    result.acknowledged, detail)
            report.replayed[lost.order_id] = result.acknowledged
            outcome = "acknowledged" if result.acknowledged else ("failed" if result.status_code is None
                                                                  else "rejected")
            self.metrics.count_replay(lost.channel, outcome)
            log.info("replayed the notify of lost order %s on %s: %s", lost.order_id, lost.channel, detail)
