"""The epay query probe over real HTTP against the simulator: every fault maps to its probe outcome,
and the merchant key (sent in the URL, echoed by real servers) never appears in a result."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.models import MERCHANT_BANNED
from monitor.probes import ADAPTERS, Observation, ProbeContext, run_probe
from monitor.probes.base import MAX_BODY, ProbeFailure, Reply, fetch, parse_json
from monitor.probes.epay import EpayAdapter
from monitor.protocols.epay import format_epay_time, format_money
from monitor.secret import Redactor
from monitor.sim.server import AppServer, SimServer

KEY = "probe-test-md5-key-7f3a9c"


def channel(endpoint: str, key: str = KEY, timeout: str = "0.5s") -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "epay-main", "kind": "epay", "weight": 60, "endpoint": endpoint,
        "credentials": {"pid": "1001", "key": key}, "probes": {"query": {"every": "2s", "timeout": timeout}},
    })


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer() as server:
        server.add_channel("epay-main", pid="1001", key=KEY)
        yield server


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient() as client:
        yield ProbeContext(client, clock, Redactor([KEY]))


def test_registered_by_kind() -> None:
    assert ADAPTERS["epay"] is EpayAdapter


@pytest.mark.parametrize(
    ("faults", "key", "outcome", "code"),
    [
        ({}, KEY, "ok", "-1"),
        ({"error_rate": 1.0}, KEY, "http_error", "500"),
        ({"hang_rate": 1.0}, KEY, "timeout", None),
        ({"bad_json_rate": 1.0}, KEY, "bad_response", None),
        ({}, "wrong-key-wrong-key", "business_error", "-3"),
    ],
)
async def test_outcomes(sim: SimServer, ctx: ProbeContext, faults: dict[str, Any], key: str, outcome: str,
                        code: str | None) -> None:
    sim.faults("epay-main").update(**faults)
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"), key)), "epay-main", "query", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail
    assert result.started_at == ctx.clock.now() and result.latency_s >= 0
    assert KEY not in result.detail


async def test_slow_gateway_is_a_timeout_within_the_deadline(sim: SimServer, ctx: ProbeContext) -> None:
    sim.faults("epay-main").update(latency_s=2.0)
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"), timeout="0.3s")), "epay-main", "query",
                             ctx)
    # timeout, not ok: the 0.3 s deadline cut the exchange instead of waiting 2 s for the answer
    assert result.outcome == "timeout" and "no complete answer within 0." in result.detail, result.detail


async def test_connection_refused(ctx: ProbeContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_probe(EpayAdapter(channel(f"http://127.0.0.1:{port}/x/")), "epay-main", "query", ctx)
    assert result.outcome == "connect_error"


async def test_found_order_and_unknown_code(ctx: ProbeContext) -> None:
    """Answers a real server could give that the simulator does not: found (code "1" as a string), odd codes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    answers = iter([
        '{"code":"1","out_trade_no":"paymon-probe-sentinel","key":"' + KEY + '"}',
        '{"code":-5,"msg":"No Act!"}',
        '{"msg":"no code"}',
        '["a list"]',
        "x" * (MAX_BODY + 10),
    ])

    async def api(request: Request) -> Response:
        if request.query_params["act"] == "query":  # the standing check: active, the key echoed
            return PlainTextResponse('{"code":1,"active":1,"money":"0.00","key":"' + KEY + '"}')
        assert request.query_params["act"] == "order"
        return PlainTextResponse(next(answers), media_type="text/html")

    async with AppServer(Starlette(routes=[Route("/api.php", api)])) as server:
        adapter = EpayAdapter(channel(server.base_url + "/"))
        results = [await run_probe(adapter, "epay-main", "query", ctx) for _ in range(5)]
    assert [(r.outcome, r.code) for r in results] == [
        ("ok", "1"), ("business_error", "-5"), ("bad_response", None), ("bad_response", None),
        ("bad_response", None),
    ]
    assert results[0].detail.endswith("; merchant active")
    assert all(KEY not in r.detail for r in results)


async def test_a_crashing_adapter_becomes_a_result(ctx: ProbeContext, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        kind: str = "broken"
        supports: tuple[str, ...] = ("query",)

        async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
            raise RuntimeError(f"bug while using {KEY}")

    result = await run_probe(Broken(), "c1", "query", ctx)
    assert (result.outcome, result.detail) == ("bad_response", "probe error: RuntimeError")
    assert KEY not in caplog.text and "RuntimeError" in caplog.text


def test_parse_json_rules() -> None:
    assert parse_json(Reply(200, {}, b'\xef\xbb\xbf {"code": 1}')) == {"code": 1}
    for reply, outcome in [(Reply(503, {}, b""), "http_error"), (Reply(404, {}, b"{}"), "http_error"),
                           (Reply(200, {}, b"<html>"), "bad_response")]:
        with pytest.raises(ProbeFailure) as exc:
            parse_json(reply)
        assert exc.value.outcome == outcome


def test_missing_credentials_are_a_config_problem() -> None:
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "epay", "weight": 1, "endpoint": "http://127.0.0.1:1/",
                                        "credentials": {"pid": "1"}})
    with pytest.raises(ValueError, match="needs credentials pid and key"):
        EpayAdapter(cfg)


async def test_unsupported_probe_type(sim: SimServer, ctx: ProbeContext) -> None:
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"))), "epay-main", "refund", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail


async def test_fetch_broken_connection(ctx: ProbeContext) -> None:
    """A server that closes the connection without answering is an http_error, not a crash."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProbeFailure) as exc:
            await fetch(ctx.client, "GET", f"http://127.0.0.1:{port}/", timeout=2)
        assert exc.value.outcome == "http_error"
    finally:
        server.close()
        await server.wait_closed()


def test_probe_failure_takes_only_failure_outcomes() -> None:
    with pytest.raises(ValueError):
        ProbeFailure("ok", "not a failure")
    with pytest.raises(ValueError):
        ProbeFailure("weird", "not an outcome")


# ---- every probe type, both server flavours ------------------------------------------------------------

PROBES = ("query", "test_order", "balance")
#: What a wrong key gets per flavour and probe: api.php EP-old -2 KEY校验失败, EP-new -3;
#: mapi.php bad sign EP-old -1, EP-new -3.
WRONG_KEY_CODE = {("new", "query"): "-3", ("new", "test_order"): "-3", ("new", "balance"): "-3",
                  ("old", "query"): "-2", ("old", "test_order"): "-1", ("old", "balance"): "-2"}
HEALTHY_CODE = {"query": "-1", "test_order": "1", "balance": "1"}


def full_channel(endpoint: str, key: str = KEY, timeout: str = "2s", close: bool = True) -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "epay-main", "kind": "epay", "weight": 60, "endpoint": endpoint,
        "credentials": {"pid": "1001", "key": key},
        "probes": {"query": {"timeout": timeout}, "balance": {"timeout": timeout},
                   "test_order": {"timeout": timeout, "amount": "0.01", "close": close}},
    })


@pytest.fixture
async def both(clock: FixedClock) -> AsyncIterator[SimServer]:
    """One EP-new channel ``new`` and one EP-old channel ``old``, on the test's clock."""
    async with SimServer(clock=clock) as server:
        server.gateway.add_channel("new", 1001, KEY, flavour="new")
        server.gateway.add_channel("old", 1001, KEY, flavour="old")
        yield server


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("healthy", {}, "ok"),
    ("error", {"error_rate": 1.0}, "http_error"),
    ("hang", {"hang_rate": 1.0}, "timeout"),
    ("bad_json", {"bad_json_rate": 1.0}, "bad_response"),
    ("maintenance", {"maintenance_rate": 1.0}, "maintenance"),
    # V1 replies are not signed: the knob only corrupts notifies, so probes stay ok.
    ("bad_signature", {"bad_signature_rate": 1.0}, "ok"),
    ("wrong_key", {}, "business_error"),
]
#: The flavours answer differently only when the protocol code runs (faults are injected before it): run EP-old
#: for the cases where its replies differ.
_BY_FLAVOUR = {"healthy", "maintenance", "wrong_key"}


@pytest.mark.parametrize(
    ("flavour", "probe", "case", "faults", "outcome"),
    [(flavour, probe, *case) for probe in PROBES for case in CASES for flavour in ("new", "old")
     if flavour == "new" or case[0] in _BY_FLAVOUR],
)
async def test_probe_outcomes(both: SimServer, ctx: ProbeContext, flavour: str, probe: str, case: str,
                              faults: dict[str, Any], outcome: str) -> None:
    both.faults(flavour).update(**faults)
    key = "wrong-key-wrong-key" if case == "wrong_key" else KEY
    cfg = full_channel(both.endpoint(flavour), key, timeout="0.3s" if case == "hang" else "2s")
    result = await run_probe(EpayAdapter(cfg), flavour, probe, ctx)
    assert result.outcome == outcome, result.detail
    expected_code = {"ok": HEALTHY_CODE[probe], "http_error": "500", "maintenance": "-1",
                     "business_error": WRONG_KEY_CODE[(flavour, probe)]}.get(outcome)
    assert result.code == expected_code, result.detail
    if case == "maintenance":
        assert "维护" in result.detail
    if case == "hang":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    assert KEY not in result.detail and KEY not in (result.code or "")
    truth = both.ground_truth()
    assert len(truth) == (1 if probe == "test_order" and outcome == "ok" else 0)
    assert all(not t.paid for t in truth)


@pytest.mark.parametrize("flavour", ["new", "old"])
async def test_query_follows_the_last_test_order(both: SimServer, ctx: ProbeContext, flavour: str) -> None:
    adapter = EpayAdapter(full_channel(both.endpoint(flavour), close=True))
    created = await run_probe(adapter, flavour, "test_order", ctx)
    assert created.outcome == "ok" and "payurl" in created.detail and "cannot close" in created.detail
    (truth,) = both.ground_truth()
    assert adapter.last_order == truth.out_trade_no and truth.out_trade_no.startswith("paymon")
    assert truth.money == Decimal("0.01") and not truth.paid
    assert truth.trade_no in created.detail
    found = await run_probe(adapter, flavour, "query", ctx)
    assert (found.outcome, found.code) == ("ok", "1")
    assert truth.out_trade_no in found.detail and "unpaid" in found.detail
    # A second test order is a new order (fresh out_trade_no), never a re-submit of the first.
    assert (await run_probe(adapter, flavour, "test_order", ctx)).outcome == "ok"
    assert len({t.out_trade_no for t in both.ground_truth()}) == 2


@pytest.mark.parametrize("flavour", ["new", "old"])
async def test_balance_and_settlements(both: SimServer, ctx: ProbeContext, clock: FixedClock,
                                       flavour: str) -> None:
    adapter = EpayAdapter(full_channel(both.endpoint(flavour)))
    empty = await run_probe(adapter, flavour, "balance", ctx)
    assert (empty.outcome, empty.value) == ("ok", 0.0)
    assert "no settlement records" in empty.detail and "STALL" not in empty.detail

    both.faults(flavour).update(balance_growth_per_min=1.0)
    clock.advance(timedelta(minutes=30))
    waiting = await run_probe(adapter, flavour, "balance", ctx)
    assert (waiting.outcome, waiting.value) == ("ok", 30.0)
    assert "STALL" in waiting.detail and "no completed settlement" in waiting.detail

    both.gateway.settle(flavour)
    settled_at = clock.now()
    clock.advance(timedelta(minutes=10))
    done = await run_probe(adapter, flavour, "balance", ctx)
    assert (done.outcome, done.value) == ("ok", 10.0)
    assert f"last completed settlement {format_epay_time(settled_at)} (30.00)" in done.detail
    assert "STALL" not in done.detail

    both.faults(flavour).update(settlement_stall=True)
    both.gateway.settle(flavour)
    running = await run_probe(adapter, flavour, "balance", ctx)
    assert "正在结算" in running.detail and "STALL" not in running.detail  # just started
    clock.advance(timedelta(hours=50))
    stuck = await run_probe(adapter, flavour, "balance", ctx)
    assert stuck.outcome == "ok" and stuck.value is not None and stuck.value > 10
    assert "settlement STALL" in stuck.detail and "正在结算" in stuck.detail
    assert "nothing settled for" in stuck.detail
    for result in (empty, waiting, done, running, stuck):
        assert KEY not in result.detail  # EP-old echoes the key in act=settle, both in act=query


async def test_answers_only_real_servers_give(ctx: ProbeContext, clock: FixedClock) -> None:
    """Stub answers: numbers as strings, a banned merchant, settle data as an object, no channel for the type,
    a success without a pay URL."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    done = format_epay_time(clock.now() - timedelta(hours=3))
    api_answers = iter([
        '{"code":"1","money":"5.00","active":"1","key":"' + KEY + '"}',
        '{"code":"1","data":{"0":{"id":"7","status":"1","money":"9.00","endtime":"' + done + '"}}}',
        '{"code":1,"money":"5.00","active":"0"}',
        '{"code":1,"money":"lots","active":1}',
        '{"code":-2,"msg":"KEY\\u6821\\u9a8c\\u5931\\u8d25"}',
    ])
    mapi_answers = iter([
        '{"code":1,"payurl":"./cashier.php?trade_no=x"}',
        '{"code":1,"trade_no":"2026112611000012345"}',
        '{"code":"1","trade_no":"2026112611000012345","qrcode":"weixin://wxpay/x"}',
        '{"code":-2,"msg":"\\u7cfb\\u7edf\\u7e41\\u5fd9"}',
    ])

    async def api(request: Request) -> Response:
        return PlainTextResponse(next(api_answers), media_type="text/html")

    async def mapi(request: Request) -> Response:
        assert parse_qs((await request.body()).decode())["money"] == ["0.01"]
        return PlainTextResponse(next(mapi_answers), media_type="text/html")

    routes = [Route("/api.php", api), Route("/mapi.php", mapi, methods=["POST"])]
    async with AppServer(Starlette(routes=routes)) as server:
        adapter = EpayAdapter(full_channel(server.base_url))  # no trailing slash
        balances = [await run_probe(adapter, "c", "balance", ctx) for _ in range(3)]
        orders = [await run_probe(adapter, "c", "test_order", ctx) for _ in range(4)]
    assert [(r.outcome, r.code, r.value) for r in balances] == [
        ("ok", "1", 5.0), ("business_error", MERCHANT_BANNED, None), ("bad_response", None, None)]
    assert "last completed settlement " + done in balances[0].detail and "STALL" not in balances[0].detail
    assert [(r.outcome, r.code) for r in orders] == [
        ("business_error", "1"), ("bad_response", None), ("ok", "1"), ("maintenance", "-2")]
    assert "qrcode" in orders[2].detail
    assert all(KEY not in r.detail for r in balances + orders)


def test_money_is_sent_as_php_prints_it() -> None:
    adapter = EpayAdapter(full_channel("http://127.0.0.1:1/"))
    assert adapter.supports == ("query", "test_order", "balance")
    assert format_money(Decimal("10.00")) == "10"


@pytest.mark.parametrize("flavour", ["new", "old"])
async def test_a_banned_merchant(both: SimServer, ctx: ProbeContext, flavour: str) -> None:
    """The simulator's merchant_banned knob behaves as the real servers (act=query active 0, creates refused with
    商户已封禁, act=order still normal), and every probe says merchant_banned, the query probe included."""
    adapter = EpayAdapter(full_channel(both.endpoint(flavour)))
    assert (await run_probe(adapter, flavour, "test_order", ctx)).outcome == "ok"
    healthy = await run_probe(adapter, flavour, "query", ctx)
    assert healthy.outcome == "ok" and healthy.detail.endswith("; merchant active")
    both.faults(flavour).update(merchant_banned=True)
    results = {p: await run_probe(adapter, flavour, p, ctx) for p in PROBES}
    assert {p: (r.outcome, r.code) for p, r in results.items()} == {
        p: ("business_error", MERCHANT_BANNED) for p in PROBES}
    assert "merchant banned at the gateway (active 0)" in results["query"].detail
    assert "商户已封禁" in results["test_order"].detail
    assert all(KEY not in r.detail for r in results.values())
    assert len(both.ground_truth()) == 1  # the refused create made no order
    async with httpx.AsyncClient(trust_env=False) as http:  # the order query itself still answers normally
        doc = (await http.get(both.endpoint(flavour) + "api.php", params={
            "act": "order", "pid": "1001", "key": KEY, "out_trade_no": adapter.last_order or ""})).json()
    assert str(doc["code"]) == "1" and doc["out_trade_no"] == adapter.last_order
