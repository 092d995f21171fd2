"""The long-running daemon: APScheduler jobs for every probe and for the evaluation cycle, plus the HTTP thread.

Scheduling: one job per (channel, probe) with jitter, ``max_instances=1`` (a slow gateway never piles up calls),
``coalesce`` (missed runs collapse into one) and an explicit misfire grace; a global semaphore caps concurrent
probes. Each probe adapter gets an :data:`~monitor.probes.base.OrderRecall` built from the store
(:func:`recall_order`), so a query probe that has created no test order since the start still asks about an order
whose answer the gateway signs. The evaluation cycle runs in a worker thread because it reads the database and
pandas; probes keep running on the loop meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.clock import Clock
from monitor.config import ChannelConfig, LoadedConfig
from monitor.metrics.prom import Metrics
from monitor.models import PROBE_TYPES, ProbeResult
from monitor.pipeline import CycleReport, Pipeline
from monitor.plugins import build_plugins
from monitor.probes import ADAPTERS, Adapter, ProbeContext, run_probe
from monitor.probes.base import TEST_ORDER_ID, OrderRecall, ProbeAdapter
from monitor.reconcile.reconciler import Reconciler, ReconcileReport
from monitor.store import Store
from monitor.store.health import read_health, record_failure, record_success

__all__ = ["TEST_ORDER_RECALL", "Daemon", "ProbeJob", "build_probe_jobs", "order_recall", "recall_order"]

log = logging.getLogger(__name__)

MAX_CONCURRENT_PROBES = 500
#: Channels per HTTP client. httpx's connection pool scans its connections on every request, so one client for
#: a thousand channels spends its time in the pool (a 1,000-channel round took 18 s with one client, 4.3 s with
#: one per ten channels, 2.6 s with one each; bench/probe_fanout.py). All clients share one TLS context.
CHANNELS_PER_CLIENT = 1
#: How far back :func:`recall_order` looks for paymon's own test orders: epay purges unpaid orders after a day.
TEST_ORDER_RECALL = timedelta(hours=23)


@dataclass(frozen=True)
class ProbeJob:
    """One scheduled probe: which channel, which probe type, how often, through which adapter."""

    channel: str
    probe: str
    every: timedelta
    adapter: Adapter


def adapter_problems(channels: tuple[ChannelConfig, ...]) -> dict[str, str]:
    """Channels whose probe adapter cannot be built (missing or unreadable credentials), with the reason."""
    return build_plugins(channels, ADAPTERS, "no probe adapter for kind {kind}")[1]


def build_probe_jobs(channels: tuple[ChannelConfig, ...]) -> list[ProbeJob]:
    """A job for every configured probe whose channel has a working adapter supporting it; a channel whose
    adapter cannot be built (bad credentials) is logged and skipped, never a crash."""
    adapters, problems = build_plugins(channels, ADAPTERS, "no probe adapter for kind {kind}")
    jobs: list[ProbeJob] = []
    for ch in channels:
        adapter = adapters.get(ch.id)
        if adapter is None:
            if ch.kind not in ADAPTERS:
                log.warning("channel %s: no probe adapter for kind %s yet; its probes are not scheduled", ch.id,
                            ch.kind)
            else:
                log.error("%s; its probes are not scheduled", problems[ch.id])
            continue
        for probe in PROBE_TYPES:
            spec = getattr(ch.probes, probe)
            if spec is None:
                continue
            if probe not in adapter.supports:
                log.warning("channel %s: probe %s is not supported for kind %s yet", ch.id, probe, ch.kind)
                continue
            jobs.append(ProbeJob(ch.id, probe, spec.every, adapter))
    return jobs


def recall_order(store: Store, channel: str, now: datetime) -> str | None:
    """An order the channel's query probe can ask about after a restart: paymon's newest test order of the last
    :data:`TEST_ORDER_RECALL` (as its stored ``test_order`` result names it) or the channel's newest order with a
    verified callback, whichever is newer; None when there is neither."""
    found: list[tuple[datetime, str]] = []
    for r in store.probe_results(channel=channel, probe="test_order", since=now - TEST_ORDER_RECALL, limit=20):
        match = TEST_ORDER_ID.search(r.detail)
        if match is not None:
            found.append((r.started_at, match.group(0)))
            break
    paid = store.newest_paid_order(channel)
    if paid is not None:
        found.append((paid[1], paid[0]))
    return max(found)[1] if found else None


def order_recall(store: Store, clock: Clock) -> OrderRecall:
    """:func:`recall_order` as the adapters' :data:`~monitor.probes.base.OrderRecall` (off the event loop)."""

    async def recall(channel: str) -> str | None:
        return await asyncio.to_thread(recall_order, store, channel, clock.now())

    return recall


class Daemon:
    """Wires the scheduler, probes, the pipeline and (optionally) the HTTP server for ``paymon run``."""

    def __init__(
        self,
        cfg: LoadedConfig,
        pipeline: Pipeline,
        store: Store,
        *,
        clock: Clock,
        metrics: Metrics,
        cycle_every: float = 10.0,
        client: httpx.AsyncClient | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        on_probe: Callable[[ProbeResult], None] | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.cycle_every = cycle_every
        self.client = client
        self.on_cycle = on_cycle
        self.on_probe = on_probe
        self.reconciler = reconciler
        self._reconcile_lock = asyncio.Lock()
        self.jobs = build_probe_jobs(cfg.channels)
        recall = order_recall(store, clock)
        for job in self.jobs:
            if isinstance(job.adapter, ProbeAdapter):
                job.adapter.recall = recall
        self.scheduler: AsyncIOScheduler | None = None
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
        self._cycle_lock = asyncio.Lock()
        self._contexts: dict[str, ProbeContext] = {}
        self._clients: list[httpx.AsyncClient] = []

    @property
    def running(self) -> bool:
        return self.scheduler is not None and bool(self.scheduler.running)

    async def probe_once(self, job: ProbeJob) -> ProbeResult:
        """Run one probe, record it, publish it."""
        ctx = self._contexts[job.channel]
        async with self._sem:
            result = await run_probe(job.adapter, job.channel, job.probe, ctx)
        await asyncio.to_thread(self.store.add_probe_results, [result])
        self.metrics.observe_probe(result)
        if self.on_probe is not None:
            self.on_probe(result)
        return result

    async def probe_all(self) -> list[ProbeResult]:
        """Every configured probe once, concurrently (``paymon once``)."""
        return list(await asyncio.gather(*(self.probe_once(j) for j in self.jobs)))

    async def cycle(self, *, wait: bool = False) -> CycleReport | None:
        """One evaluation cycle in a worker thread; overlapping scheduled calls are skipped, never stacked
        (``wait``: run after the one in progress instead, for a caller that has news to act on now)."""
        if self._cycle_lock.locked() and not wait:
            return None
        async with self._cycle_lock:
            try:
                report = await asyncio.to_thread(self.pipeline.cycle)
            except Exception as exc:
                await asyncio.to_thread(self._cycle_failed, exc)
                return None
            await asyncio.to_thread(self._cycle_succeeded)
        if self.on_cycle is not None:
            self.on_cycle(report)
        return report

    def _cycle_failed(self, exc: Exception) -> None:
        """A failed cycle: one log line (the traceback only with -v), recorded in the store; the first failure of
        a streak is announced once through every sink."""
        reason = self.cfg.redactor(" ".join(f"{type(exc).__name__}: {exc}".split()))
        log.error("evaluation cycle failed: %s; the next one will retry", reason,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        try:
            if record_failure(self.store, reason, now=self.clock.now(), sinks=list(self.pipeline.sinks)):
                self.pipeline.deliver()
        except Exception as err:  # noqa: BLE001 - a store that fails too must not stop the schedule
            log.error("evaluation health could not be recorded: %s", type(err).__name__)

    def _cycle_succeeded(self) -> None:
        """A cycle succeeded: recorded; the first after failures is announced once (``recovered``)."""
        try:
            if record_success(self.store, now=self.clock.now(), sinks=list(self.pipeline.sinks)):
                log.info("evaluation cycles succeed again")
                self.pipeline.deliver()
        except Exception as err:  # noqa: BLE001 - as above
            log.error("evaluation health could not be recorded: %s", type(err).__name__)

    async def replay_lost(self, report: ReconcileReport) -> None:
        """Replay the notifies of lost orders reported since ``report``'s round (added to it); skipped while a
        round runs, which replays them itself."""
        if self.reconciler is None or self._reconcile_lock.locked():
            return
        async with self._reconcile_lock:
            await self.reconciler.replay(self._contexts, report)

    async def reconcile(self) -> ReconcileReport | None:
        """One reconciliation round; overlapping calls are skipped, a failing round is logged and retried."""
        if self.reconciler is None or self._reconcile_lock.locked():
            return None
        async with self._reconcile_lock:
            try:
                report = await self.reconciler.run(self._contexts)
            except Exception:
                log.exception("reconciliation round failed; the next one will retry")
                return None
        if (report.paid or report.held) and self.running:
            # The round has already reported (and replayed) what it found; a cycle now delivers the notifications
            # and refreshes the status, instead of waiting for the next scheduled one.
            await self.cycle(wait=True)
        return report

    async def __aenter__(self) -> Daemon:
        reconciled = set(self.reconciler.queriers) if self.reconciler is not None else set()
        channels = sorted({j.channel for j in self.jobs} | reconciled)
        if self.client is not None:
            clients = [self.client]
        else:
            count = max(1, -(-len(channels) // CHANNELS_PER_CLIENT))
            tls = ssl.create_default_context()  # one TLS context for all: each costs ~0.7 MB
            self._clients = clients = [
                httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=tls,
                                  limits=httpx.Limits(max_connections=CHANNELS_PER_CLIENT * 4))
                for _ in range(count)
            ]
        self._contexts = {ch: ProbeContext(clients[i % len(clients)], self.clock, self.cfg.redactor)
                          for i, ch in enumerate(channels)}
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()
        for client in self._clients:
            await client.aclose()
        self._clients = []

    def start(self) -> None:
        """Schedule every job; the first runs of all start now."""
        sched = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )
        now = self.clock.now()
        for job in self.jobs:
            every = job.every.total_seconds()
            sched.add_job(self.probe_once, "interval", args=[job], seconds=every, jitter=min(every * 0.1, 5.0),
                          id=f"probe:{job.channel}:{job.probe}", next_run_time=now, replace_existing=True)
        sched.add_job(self.cycle, "interval", seconds=self.cycle_every, id="cycle",
                      next_run_time=now + timedelta(seconds=min(1.0, self.cycle_every)), replace_existing=True)
        if self.reconciler is not None and self.reconciler.queriers:
            every = self.cfg.monitor.reconcile.every.total_seconds()
            sched.add_job(self.reconcile, "interval", seconds=every, id="reconcile",
                          next_run_time=now + timedelta(seconds=min(5.0, every)), replace_existing=True)
        sched.add_job(asyncio.to_thread, "interval", args=[self.pipeline.prune], hours=1, id="retention",
                      next_run_time=now + timedelta(seconds=60), replace_existing=True)
        sched.start()
        self.scheduler = sched
        log.info("paymon running: %d probe job(s), cycle every %gs", len(self.jobs), self.cycle_every)

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    def health(self) -> tuple[bool, str]:
        """For ``/healthz``: the scheduler runs, the store answers and the evaluation cycles do not fail."""
        if not self.running:
            return False, "scheduler is not running"
        if not self.store.ping():
            return False, "storage does not answer"
        health = read_health(self.store)
        if health.failing:
            return False, health.describe()
        return True, "ok"


def probe_summary(results: list[ProbeResult]) -> Mapping[str, int]:
    """Outcome counts, for ``paymon once`` output."""
    out: dict[str, int] = {}
    for r in results:
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return out
