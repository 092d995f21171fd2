"""The distribution knobs over the wire: request latency jitter and callback delay jitter; flag validation."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from monitor.protocols.epay import sign_md5
from monitor.sim.faults import KNOBS, Faults
from monitor.sim.server import AppServer, SimServer
from tests.conftest import PATIENCE_S

KEY = "faults-test-key-123456"


def test_flag_and_amount_knobs_are_validated() -> None:
    f = Faults()
    f.update(settlement_stall=True, balance_growth_per_min=2.5)
    assert (f.settlement_stall, f.balance_growth_per_min) == (True, 2.5)
    for bad in ({"settlement_stall": 1}, {"balance_growth_per_min": -1.0}, {"latency_jitter_s": float("nan")}):
        with pytest.raises(ValueError):
            f.update(**bad)  # type: ignore[arg-type]
    assert "callback_jitter_s" in KNOBS and "maintenance_rate" in KNOBS


def test_distributions_stay_in_their_bounds() -> None:
    rng = random.Random(7)
    f = Faults(latency_s=0.1, latency_jitter_s=0.5, callback_delay_s=2.0, callback_jitter_s=3.0)
    lat = [f.latency(rng) for _ in range(2000)]
    cb = [f.callback_delay(rng) for _ in range(2000)]
    assert 0.1 <= min(lat) < 0.15 and 0.55 < max(lat) <= 0.6
    assert 2.0 <= min(cb) < 2.1 and 4.9 < max(cb) <= 5.0
    assert Faults(latency_s=0.3).latency(rng) == 0.3  # no jitter: exact


async def test_latency_jitter_over_the_wire() -> None:
    async with SimServer(rng=random.Random(3)) as sim, httpx.AsyncClient() as client:
        sim.add_channel("main", pid=1001, key=KEY)
        sim.faults("main").update(latency_s=0.05, latency_jitter_s=0.25)
        took = []
        for _ in range(12):
            t0 = time.perf_counter()
            r = await client.get(sim.endpoint("main") + "api.php", params={"act": "no"})
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200
    # Over the wire only what a busy machine cannot fake: never faster than the base latency, and spread out.
    # The upper end of the distribution is test_distributions_stay_in_their_bounds' (wall-clock upper bounds
    # measure the machine).
    assert min(took) >= 0.05
    assert max(took) - min(took) > 0.05  # it is a distribution, not a constant


async def test_callback_jitter_spreads_the_notifies() -> None:
    arrivals: list[float] = []

    async def notify(request: Request) -> PlainTextResponse:
        arrivals.append(time.perf_counter())
        return PlainTextResponse("success")

    async with AppServer(Starlette(routes=[Route("/n", notify)])) as shop, \
            SimServer(rng=random.Random(5)) as sim, httpx.AsyncClient() as client:
        sim.add_channel("main", pid=1001, key=KEY)
        sim.faults("main").update(pay_probability=1.0, callback_delay_s=0.0, callback_jitter_s=0.6)
        started = []
        for i in range(8):
            params = {"pid": "1001", "type": "alipay", "out_trade_no": f"J{i}", "notify_url": shop.base_url + "/n",
                      "name": "x", "money": "1.00", "clientip": "127.0.0.1"}
            params["sign"] = sign_md5(params, KEY)
            trade_no = (await client.post(sim.endpoint("main") + "mapi.php", data=params)).json()["trade_no"]
            started.append(time.perf_counter())
            assert sim.gateway.buyer_visits("main", trade_no)
        assert await sim.wait_notifies(PATIENCE_S)
        await asyncio.sleep(0)
    delays = sorted(a - started[0] for a in arrivals)
    assert len(delays) == 8  # (their upper bound: test_distributions_stay_in_their_bounds, not the wall clock)
    assert delays[-1] - delays[0] > 0.15
