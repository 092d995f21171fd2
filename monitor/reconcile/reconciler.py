"""The reconciler: asks each channel about orders the shop still thinks unpaid, and (optionally) replays the
notifies of lost orders.

One :meth:`Reconciler.run` is one round (the daemon runs it every ``reconcile.every``; ``paymon once`` once):

1. for every channel with a querier, the orders due a question (created between ``horizon`` and ``older_than``
   ago, unpaid in the shop, asked again only when they have doubled their age since the last question), newest
   first, at most ``reconcile.per_round`` per channel, at most ``reconcile.rate`` questions per second per
   channel, channels in parallel;
2. the answers are stored with what they mean (paid, held, refunded, closed, unpaid, unknown): a paid order gets
   the channel's pay time when it gives one (else the time paymon learned it, kept apart and never shown as a pay
   time), a held one is held funds;
3. right away, in the same round, the pipeline's report (``Pipeline.report_lost``, given as ``report``) records
   and announces every order whose callback deadline has passed without a verified callback as lost, by id, and
   held funds as held funds (``reporting.report_lost`` / ``report_held``): a loss found now is reported now, not
   one round (with ``paymon once`` under cron, one cron period) later;
4. with ``replay_notify`` on, every open lost order of a channel whose protocol lets the merchant key sign
   notifies (and whose ``notify_url`` is configured) gets one replay: asked again (the channel must still say
   plainly paid: a held, refunded or closed order is *refused*, logged with the reason and counted as
   ``refused``, not as a failed replay), claimed in the audit table *before* sending (a crash never replays
   twice), sent, and the answer kept.

A channel that fails (timeout, bad signature, maintenance…) costs only its own round: the orders stay due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.clients.base import ProbeContext, ProbeFailure
from monitor.clock import Clock
from monitor.config import ChannelConfig, LoadedConfig
from monitor.metrics.prom import Metrics
from monitor.plugins import build_plugins
from monitor.reconcile.base import ORDER_STATES, ChannelOrder, Querier, QuerierFactory, Replayer
from monitor.reconcile.reporting import LostReport
from monitor.store import Store
from monitor.store.reconcile import CheckAnswer, ReconcileStore

__all__ = ["MAX_FAILURES", "ReconcileReport", "Reconciler", "build_queriers"]

log = logging.getLogger(__name__)

#: A channel that fails this many questions in a row is left alone until the next round (it is probably down;
#: asking about every order would only hammer it).
MAX_FAILURES = 3


@dataclass
class ReconcileReport:
    """What one round did: questions asked and their answers (by what they mean), failures per channel, replays
    sent and replays refused (order id → why)."""

    asked: int = 0
    paid: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    unpaid: int = 0
    refunded: int = 0
    closed: int = 0
    unknown: int = 0
    not_found: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    replayed: dict[str, bool] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    #: What the report right after the answers recorded (lost orders, held funds), when there is a reporter.
    reported: LostReport = field(default_factory=LostReport)


def build_queriers(channels: Sequence[ChannelConfig], registry: Mapping[str, QuerierFactory]) -> tuple[
    dict[str, Querier], dict[str, str]
]:
    """A querier per channel whose kind has one; and, per channel that cannot be reconciled, why."""
    return build_plugins(channels, registry, "{kind} has no order query paymon can use")


class Reconciler:
    """Reconciliation rounds for one config. ``queriers`` maps channel ids to their queriers; ``report`` (the
    pipeline's ``report_lost``) records and announces lost orders and held funds, called after the answers are
    stored and before the replays."""

    def __init__(self, cfg: LoadedConfig, store: Store, queriers: Mapping[str, Querier], *, clock: Clock,
                 metrics: Metrics, report: Callable[[datetime], LostReport] | None = None) -> None:
        self.cfg = cfg
        self.report = report
        self.store = ReconcileStore(store)
        self.queriers = dict(queriers)
        self.clock = clock
        self.metrics = metrics
        self.channels = {c.id: c for c in cfg.channels}
        #: Lost orders whose replay was refused for a state that may still change (held, unpaid): counted once.
        self._refused: set[str] = set()

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
        if self.report is not None:
            # A loss whose deadline has passed when its answer is stored is reported (and replayed) now.
            report.reported = await asyncio.to_thread(self.report, self.clock.now())
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
            return CheckAnswer(order_id, "not_found" if got is not None else "no_answer",
                               "not_found" if got is not None else "no_answer")
        state = got.state if got.state in ORDER_STATES else "unknown"
        self.metrics.count_reconcile(channel, state)
        if state == "paid":
            report.paid.append(order_id)
        elif state == "held":
            report.held.append(order_id)
        else:
            setattr(report, state, getattr(report, state) + 1)
        return CheckAnswer(order_id, got.status or state, state, got.paid_at if state == "paid" else None,
                           got.trade_no if state in ("paid", "held") else None)

    async def replay(self, contexts: Mapping[str, ProbeContext], report: ReconcileReport) -> None:
        """Only the replay step (with ``replay_notify`` on), adding to ``report``: for lost orders reported after
        this round's own report (a deadline that passed before the cycle's report), so they too go out in the
        run that found them."""
        if self.cfg.monitor.reconcile.replay_notify:
            await self._replay_lost(contexts, report)

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
                why = _refusal(answer)
                report.refused[lost.order_id] = why
                final = answer is not None and (not answer.found or answer.state in _FINAL_REFUSALS)
                if final:
                    # A refund or a closed order will not turn paid: the refusal is audited as this order's one
                    # replay attempt, so it is counted and logged once, not every round.
                    if await asyncio.to_thread(self.store.begin_replay, lost.order_id, lost.channel,
                                               self.clock.now()):
                        await asyncio.to_thread(self.store.finish_replay, lost.order_id, None, False,
                                                f"refused: {why}")
                    else:
                        continue
                elif lost.order_id in self._refused:
                    continue  # still held / unpaid: asked again each round, counted and logged once
                self._refused.add(lost.order_id)
                self.metrics.count_replay(lost.channel, "refused")
                log.warning("replay %s/%s refused: %s; the notify is not sent", lost.channel, lost.order_id, why)
                continue
            if not await asyncio.to_thread(self.store.begin_replay, lost.order_id, lost.channel, self.clock.now()):
                continue
            result = await querier.replay(answer, ch.notify_url, ctx)
            detail = ctx.redactor(result.detail)
            await asyncio.to_thread(self.store.finish_replay, lost.order_id, result.status_code,
                                    result.acknowledged, detail)
            if not result.sent:
                report.refused[lost.order_id] = detail
                self.metrics.count_replay(lost.channel, "refused")
                log.warning("replay %s/%s refused: %s", lost.channel, lost.order_id, detail)
                continue
            report.replayed[lost.order_id] = result.acknowledged
            outcome = "acknowledged" if result.acknowledged else ("failed" if result.status_code is None
                                                                  else "rejected")
            self.metrics.count_replay(lost.channel, outcome)
            log.info("replayed the notify of lost order %s on %s: %s", lost.order_id, lost.channel, detail)


#: Answers after which a lost order will never be replayed (the refusal is final and audited).
_FINAL_REFUSALS = frozenset({"refunded", "closed"})

#: Why a lost order is not replayed, by what the channel now says (a replay would hand the shop money it has not
#: got, or that the buyer has back).
_REFUSALS = {
    "held": "the channel holds the buyer's money without completing the payment (held funds: status {status})",
    "refunded": "the channel says the payment was refunded (status {status}): the buyer has the money back",
    "closed": "the channel says the order is closed (status {status}): no money is held",
    "unpaid": "the channel now says unpaid (status {status})",
    "unknown": "the channel's status {status} is not one paymon knows as paid",
}


def _refusal(answer: ChannelOrder | None) -> str:
    """Why a replay is refused, in words, from the channel's fresh answer."""
    if answer is None:
        return "the channel gave no answer about the order"
    if not answer.found:
        return "the channel no longer knows the order"
    return _REFUSALS.get(answer.state, _REFUSALS["unknown"]).format(status=answer.status or "?")
