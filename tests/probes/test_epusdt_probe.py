"""The epusdt probes over real HTTP against the simulator: test_order creates + checks a fresh order of the
smallest accepted amount, query only reads (the last test order's status, else a sentinel's "not found"); every
fault maps to its probe outcome, a 10-minute schedule creates at most the test orders it schedules, and the
API token never appears in a result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.daemon import build_probe_jobs
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.epusdt import MIN_AMOUNT, SENTINEL_TRADE_ID, EpusdtAdapter
from monitor.protocols.epusdt import verify
from monitor.secret import Redactor
from monitor.sim.epusdt import EpusdtGateway
from monitor.sim.server import AppServer, SimServer

TOKEN = "epusdt-probe-token-5b7e1d9c"
PROBES = ("query", "test_order")


def channel(endpoint: str, token: str = TOKEN, timeout: str = "2s", amount: str | None = None) -> ChannelConfig:
    test_order: dict[str, Any] = {"every": "5m", "timeout": timeout}
    if amount is not None:
        test_order["amount"] = amount
    return ChannelConfig.model_validate({
        "id": "usdt", "kind": "epusdt", "weight": 10, "endpoint": endpoint, "credentials": {"token": token},
        "probes": {"query": {"every": "30s", "timeout": timeout}, "test_order": test_order},
    })


@pytest.fixture
async def sim(clock: FixedClock) -> AsyncIterator[tuple[SimServer, EpusdtGateway]]:
    async with SimServer(clock=clock) as server:
        gw = EpusdtGateway(clock=clock)
        gw.add_channel("usdt", token=TOKEN)
        server.add_gateway(gw)
        yield server, gw


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield ProbeContext(client, clock, Redactor([TOKEN]))


def test_registered_by_kind() -> None:
    assert ADAPTERS["epusdt"] is EpusdtAdapter
    assert EpusdtAdapter.supports == PROBES


def test_missing_token_is_a_config_problem() -> None:
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "epusdt", "weight": 1, "endpoint": "http://127.0.0.1:1/"})
    with pytest.raises(ValueError, match="needs credentials token"):
        EpusdtAdapter(cfg)


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize(
    ("faults", "token", "outcome", "code"),
    [
        pytest.param({}, TOKEN, "ok", "200", id="healthy"),
        # epusdt signs requests and callbacks, not replies: a corrupted-signature fault changes nothing here
        pytest.param({"bad_signature_rate": 1.0}, TOKEN, "ok", "200", id="bad_signature"),
        pytest.param({"error_rate": 1.0}, TOKEN, "http_error", "500", id="error"),
        pytest.param({"hang_rate": 1.0}, TOKEN, "timeout", None, id="hang"),
        pytest.param({"bad_json_rate": 1.0}, TOKEN, "bad_response", None, id="bad_json"),
        pytest.param({"maintenance_rate": 1.0}, TOKEN, "maintenance", "400", id="maintenance"),
        pytest.param({}, "wrong-token-wrong-token", "business_error", "401", id="wrong_token"),
    ],
)
async def test_outcomes(sim: tuple[SimServer, EpusdtGateway], ctx: ProbeContext, probe: str, faults: dict[str, Any],
                        token: str, outcome: str, code: str | None) -> None:
    server, gw = sim
    gw.faults("usdt").update(**faults)
    timeout = "0.3s" if "hang_rate" in faults else "2s"
    result = await run_probe(EpusdtAdapter(channel(server.endpoint("usdt"), token, timeout)), "usdt", probe, ctx)
    if probe == "query" and code in ("200", "401"):
        # query reads the public check-status of a sentinel (no test order yet): no token, no order involved
        outcome, code = "ok", "10008"
    assert (result.outcome, result.code) == (outcome, code), result.detail
    assert TOKEN not in result.detail and TOKEN not in (result.code or "")
    if outcome == "timeout":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    created = gw.ground_truth()
    assert len(created) == (1 if outcome == "ok" and probe == "test_order" else 0)
    assert gw.probe_orders("usdt") == len(created)
    if outcome == "ok" and probe == "test_order":
        assert "status 1 (waiting)" in result.detail and created[0].trade_no in result.detail
    if probe == "query" and outcome == "ok":
        assert "no test order yet" in result.detail and "nothing created" in result.detail


async def test_test_order_is_a_fresh_order_of_the_minimum_and_query_reads_it(sim: tuple[SimServer, EpusdtGateway],
                                                                             ctx: ProbeContext,
                                                                             clock: FixedClock) -> None:
    server, gw = sim
    adapter = EpusdtAdapter(channel(server.endpoint("usdt").rstrip("/")))  # a base URL without the slash works
    results = [await run_probe(adapter, "usdt", p, ctx) for p in ("query", "test_order", "query", "test_order")]
    assert [r.outcome for r in results] == ["ok"] * 4
    orders = gw.ground_truth()
    assert len(orders) == 2 == gw.probe_orders("usdt")  # only test_order creates
    assert len({o.out_trade_no for o in orders}) == 2
    assert all(o.out_trade_no.startswith("paymon-probe-") and len(o.out_trade_no) <= 32 for o in orders)
    assert all(o.money == MIN_AMOUNT == Decimal("0.02") and not o.paid for o in orders)
    assert adapter.last_trade_id == orders[-1].trade_no
    assert results[2].detail == f"check-status: last test trade {orders[0].trade_no} has status 1 (waiting); " \
                                "nothing created"
    clock.advance(timedelta(minutes=11))  # the simulator expires unpaid orders after 10 minutes
    expired = await run_probe(adapter, "usdt", "query", ctx)
    assert (expired.outcome, expired.code) == ("ok", "200")
    assert f"last test trade {orders[1].trade_no} has status 3 (expired)" in expired.detail
    assert gw.probe_orders("usdt") == 2


async def test_ten_minutes_of_the_schedule_create_at_most_two_orders(ctx: ProbeContext, clock: FixedClock) -> None:
    """``query every: 30s`` and ``test_order every: 10m`` over 10 simulated minutes, each job run when the
    scheduler would run it (first run at the start, then every interval): the simulator counts the orders."""
    async with SimServer(clock=clock) as server:
        gw = EpusdtGateway(clock=clock)
        gw.add_channel("usdt", token=TOKEN)
        server.add_gateway(gw)
        cfg = ChannelConfig.model_validate({
            "id": "usdt", "kind": "epusdt", "weight": 10, "endpoint": server.endpoint("usdt"),
            "credentials": {"token": TOKEN},
            "probes": {"query": {"every": "30s"}, "test_order": {"every": "10m"}},
        })
        jobs = build_probe_jobs((cfg,))
        assert sorted((j.probe, j.every) for j in jobs) == [("query", timedelta(seconds=30)),
                                                            ("test_order", timedelta(minutes=10))]
        start, end = clock.now(), clock.now() + timedelta(minutes=10)
        due = {j.probe: start for j in jobs}
        outcomes: list[str] = []
        while min(due.values()) <= end:
            clock.set(min(due.values()))
            for job in jobs:
                if due[job.probe] == clock.now():
                    outcomes.append((await run_probe(job.adapter, "usdt", job.probe, ctx)).outcome)
                    due[job.probe] += job.every
        assert outcomes.count("ok") == len(outcomes) == 21 + 2  # 21 queries, 2 test orders (at 0 and 10 min)
        assert gw.probe_orders("usdt") == 2
        async with httpx.AsyncClient(trust_env=False) as http:
            listed = (await http.get(server.base_url + "/_sim/channels")).json()
        assert [(c["id"], c["probe_orders"]) for c in listed] == [("usdt", 2)]


async def test_a_larger_configured_amount_is_used(sim: tuple[SimServer, EpusdtGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    for amount, expected in (("0.5", Decimal("0.5")), ("0.01", MIN_AMOUNT)):
        result = await run_probe(EpusdtAdapter(channel(server.endpoint("usdt"), amount=amount)), "usdt",
                                 "test_order", ctx)
        assert result.outcome == "ok", result.detail
        assert gw.ground_truth()[-1].money == expected


@pytest.fixture
def scripted() -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Answers a real server could give that the simulator does not, and the create requests it received."""
    answers: list[str] = []
    received: list[dict[str, Any]] = []
    yield answers, received
    assert not answers, "unused scripted answers"


def _app(answers: list[str], received: list[dict[str, Any]]) -> Starlette:
    async def create(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(answers.pop(0), media_type="application/json")

    async def status(request: Request) -> Response:
        return Response(answers.pop(0), media_type="application/json")

    return Starlette(routes=[Route("/api/v1/order/create-transaction", create, methods=["POST"]),
                             Route("/pay/check-status/{trade_id}", status)])


_CREATED = json.dumps({"status_code": 200, "message": "success", "data": {
    "trade_id": "202611261112001", "order_id": None, "amount": 0.02, "actual_amount": 0.0031,
    "token": "TWalletAddress", "expiration_time": 1, "payment_url": "https://pay.example/checkout"}})


@pytest.mark.parametrize(
    ("answers", "outcome", "code"),
    [
        ([json.dumps({"status_code": 400, "message": "支付金额 value should be greater than 0.01", "data": None})],
         "business_error", "400"),
        ([json.dumps({"status_code": 10005, "message": "无可用金额通道", "data": None})], "business_error", "10005"),
        (['{"status_code": "200", "data": []}'], "bad_response", None),
        (['{"message": "no code"}'], "bad_response", None),
        ([json.dumps({"status_code": 200, "data": {"trade_id": "202611261112001", "token": "T"}})],
         "bad_response", None),
        ([_CREATED, json.dumps({"status_code": 200, "data": {"trade_id": "202611261112001", "status": 3}})],
         "bad_response", None),
        ([_CREATED, json.dumps({"status_code": 10008, "message": "订单不存在", "data": None})],
         "business_error", "10008"),
        ([_CREATED, json.dumps({"status_code": 200, "data": {"trade_id": "202611261112001", "status": 1}})],
         "ok", "200"),
    ],
)
async def test_answers_the_simulator_does_not_give(ctx: ProbeContext, scripted: tuple[list[str], list[Any]],
                                                   answers: list[str], outcome: str, code: str | None) -> None:
    queue, received = scripted
    queue.extend(answers)
    async with AppServer(_app(queue, received)) as server:
        result = await run_probe(EpusdtAdapter(channel(server.base_url + "/")), "usdt", "test_order", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail
    request = received[0]
    assert verify(request, TOKEN) and request["amount"] == 0.02
    assert request["notify_url"].startswith("https://") and ".invalid/" in request["notify_url"]


_TRADE = "202611261112001"


@pytest.mark.parametrize(
    ("last", "answer", "outcome", "code", "says"),
    [
        (None, {"status_code": 200, "data": {"trade_id": SENTINEL_TRADE_ID, "status": 1}}, "bad_response", None,
         "sentinel trade id was answered"),
        (_TRADE, {"status_code": 200, "data": {"trade_id": _TRADE, "status": 9}}, "bad_response", None, "status 9"),
        (_TRADE, {"status_code": 200, "data": {"trade_id": "999", "status": 1}}, "bad_response", None,
         "another trade"),
        (_TRADE, {"status_code": 200, "data": {"trade_id": _TRADE, "status": "2"}}, "ok", "200", "2 (paid)"),
        (_TRADE, {"status_code": 10008, "message": "订单不存在", "data": None}, "ok", "10008",
         f"last test trade {_TRADE} is unknown"),
        (_TRADE, {"status_code": 400, "message": "系统错误", "data": None}, "maintenance", "400", "系统错误"),
    ],
)
async def test_query_answers_the_simulator_does_not_give(ctx: ProbeContext, scripted: tuple[list[str], list[Any]],
                                                         last: str | None, answer: dict[str, Any], outcome: str,
                                                         code: str | None, says: str) -> None:
    queue, received = scripted
    queue.append(json.dumps(answer))
    async with AppServer(_app(queue, received)) as server:
        adapter = EpusdtAdapter(channel(server.base_url + "/"))
        adapter.last_trade_id = last
        result = await run_probe(adapter, "usdt", "query", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail
    assert says in result.detail
    assert received == []  # query never creates


async def test_unsupported_probe_type(ctx: ProbeContext) -> None:
    result = await run_probe(EpusdtAdapter(channel("http://127.0.0.1:1/")), "usdt", "balance", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail
