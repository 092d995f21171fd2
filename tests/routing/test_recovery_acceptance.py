"""Recovery of a drained channel end to end on the shipped rules (config/monitor.yaml): the epay simulator over
real HTTP, a simulated shop placing orders through it by the weights paymon writes, the daemon's probe jobs and
evaluation cycle, all on a fixed clock (simulated time, no waiting).

An 80-second outage of ``epay-main`` (HTTP 500 on every request) drains it (``channel_down``); the orders it failed
during the outage are decided failed later, while it is drained or being restored. Before recovery was judged on
what paymon can still see, those late failures fired ``low_success``, which no order could resolve at a lowered
weight, and held the channel down for good. Now: once repaired it is back at its full weight within
``healthy_for`` plus the restore steps, every alert that fired has been resolved, and none is left firing. A
channel that stays broken is never restored.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.clock import FixedClock
from monitor.sim import SimServer
from monitor.sim.shop import Shop
from tests.test_probe_acceptance import Run, epay_channel, shipped_run

TICK = timedelta(seconds=30)  # every probe interval of the channels is a multiple of it
PER_TICK = 6  # orders per tick on a channel at its full weight (50)
ORDERS_AT = timedelta(seconds=10)  # the shop's orders come 10 s after each probe moment
#: The shop expires unpaid orders after 20 minutes: paymon's 15-minute pay timeout decides the outage's orders
#: failed, by which time the rule's 15-minute window holds nothing from before the outage.
EXPIRE_S = 1200.0
HEALTHY = timedelta(minutes=70)  # the shipped low_success detector needs an hour of history first
CHANNELS = ("epay-main", "epay-backup")
#: The outage begins this long after a query probe (10 s before the next), so its 80 seconds span three of them
#: (10 s, 40 s and 70 s in), as the shipped channel_down rule needs; the repair comes 10 s after the third.
OFFSET = timedelta(seconds=20)


@pytest.fixture
async def sim(clock: FixedClock) -> AsyncIterator[SimServer]:
    async with SimServer(clock=clock, rng=random.Random(13)) as server:
        yield server


class Traffic:
    """The shop: ``PER_TICK`` orders each tick (between the probe moments) per channel at its full weight (a share
    at a lower weight), each opened at the gateway over HTTP and visited by its buyer; notifies answered at once;
    unpaid orders expire."""

    def __init__(self, shop: Shop, sim: SimServer, run: Run) -> None:
        self.shop, self.sim, self.run = shop, sim, run
        self.credit = dict.fromkeys(CHANNELS, 0.0)
        self.placed = 0
        self.next_orders = run.clock.now() + ORDERS_AT
        for cid in CHANNELS:
            gateway = sim.gateway_of(cid)
            sim.faults(cid).update(callback_delay_s=0.0, callback_jitter_s=0.0)
            shop.add_channel(cid, endpoint=sim.endpoint(cid), kind=gateway.kind,
                             **shop.adapters[gateway.kind].credentials_of(gateway, cid))

    async def until(self, end: datetime) -> None:
        """Probes and cycles as the daemon runs them, and the shop's orders between them, up to ``end``."""
        while self.next_orders <= end:
            await self.run.until(self.next_orders)
            self.run.clock.set(self.next_orders)
            for cid in CHANNELS:
                self.credit[cid] += PER_TICK * self.run.weight(cid) / 50
                while self.credit[cid] >= 1:
                    self.credit[cid] -= 1
                    order = await self.shop.place_order(cid, "alipay", Decimal("10.00"))
                    self.placed += 1
                    if order.trade_no is not None:
                        self.sim.gateway_of(cid).buyer_visits(cid, order.trade_no)
            for cid in CHANNELS:
                assert await self.sim.gateway_of(cid).wait_notifies(timeout=30)
            self.shop.expire_due()
            self.next_orders += TICK
        await self.run.until(end)
        self.run.clock.set(end)


async def scenario(sim: SimServer, clock: FixedClock, config_dir: Path, *, repaired: bool) -> tuple[Run, Traffic]:
    run = await shipped_run(config_dir, clock, [epay_channel(sim, cid) for cid in CHANNELS])
    start = clock.now()
    async with Shop(config_dir.parent / "var" / "shop" / "orders.jsonl", clock=clock,
                    rng=random.Random(13), expire_after=EXPIRE_S) as shop:
        traffic = Traffic(shop, sim, run)
        try:
            async with run.daemon:
                await traffic.until(start + HEALTHY)
                assert run.lines == [] and run.weight("epay-main") == 50
                outage = clock.now() + OFFSET
                await traffic.until(outage)
                sim.faults("epay-main").update(error_rate=1.0)
                await traffic.until(outage + timedelta(seconds=80))
                if repaired:
                    sim.faults("epay-main").update(error_rate=0.0)
                await traffic.until(outage + timedelta(minutes=45))
        finally:
            run.app.pipeline.close()
            run.app.store.close()
    return run, traffic


async def test_an_80_second_outage_then_repair_is_restored_in_full_and_every_alert_resolves(
        sim: SimServer, clock: FixedClock, config_dir: Path) -> None:
    start = clock.now()
    run, traffic = await scenario(sim, clock, config_dir, repaired=True)
    assert traffic.placed > 800
    outage = start + HEALTHY + OFFSET
    repaired = outage + timedelta(seconds=80)
    drained = [line for line in run.lines if "50 → 0" in line]
    assert drained == [f"{(outage + timedelta(seconds=70)):%H:%M:%S} ⚖️ 权重 epay-main (epay-main): 50 → 0 "
                       "(规则 channel_down: 摘除 (权重归零))"]
    restored = [line for line in run.lines if "逐步恢复" in line]
    assert len(restored) == 3, run.lines
    # Back at its full weight within healthy_for and the steps after the first (shipped: 10m, then 5m apart),
    # counted from the first probe after the repair (one tick).
    full = next(line for line in restored if "→ 50" in line)
    at = clock.now().replace(hour=int(full[:2]), minute=int(full[3:5]), second=int(full[6:8]))
    assert at <= repaired + TICK + timedelta(minutes=10) + 2 * timedelta(minutes=5)
    assert run.weight("epay-main") == 50
    history = list(reversed(run.app.store.alert_history(limit=1000)))
    fired = [(h["rule"], h["channel"]) for h in history if h["kind"] == "firing"]
    assert ("channel_down", "epay-main") in fired
    for key in set(fired):
        kinds = [h["kind"] for h in history if (h["rule"], h["channel"]) == key and h["kind"] != "reminder"]
        assert kinds[-1] == "resolved", (key, kinds)
    assert all(s.state != "firing" for s in run.app.store.alert_states().values())


async def test_an_outage_that_is_never_repaired_is_never_restored(
        sim: SimServer, clock: FixedClock, config_dir: Path) -> None:
    run, _ = await scenario(sim, clock, config_dir, repaired=False)
    assert run.weight("epay-main") == 0
    assert not any("epay-main (epay-main): 0 →" in line for line in run.lines), run.lines
    assert run.app.store.alert_states()[("channel_down", "epay-main")].state == "firing"
