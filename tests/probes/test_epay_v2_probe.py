"""The epay V2 (RSA) probes over real HTTP against the simulator: signed requests, verified replies, every fault
mapped to its probe outcome, and no key material in any result."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.models import MERCHANT_BANNED, ProbeResult
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.epay_v2 import EpayV2Adapter
from monitor.protocols.epay_v2 import base64_from_pem, private_key_pem, public_key_pem, signed_reply
from monitor.secret import Redactor
from monitor.sim import AppServer, SimServer
from monitor.sim.epay_v2 import EpayV2Gateway
from monitor.sim.php import php_json

PID = "1001"


@functools.cache
def key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def merchant_pem() -> str:
    return private_key_pem(key("merchant"))


def platform_public() -> str:
    return public_key_pem(key("platform"))


def secrets() -> list[str]:
    return [merchant_pem(), base64_from_pem(merchant_pem())]


def channel(endpoint: str, *, pid: str = PID, private: str | None = None, platform: str | None = None,
            timeout: str = "2s") -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "epay-v2", "kind": "epay_v2", "weight": 40, "endpoint": endpoint,
        "credentials": {"pid": pid, "private_key": private or base64_from_pem(merchant_pem()),
                        "platform_public_key": platform or platform_public()},
        "probes": {"query": {"timeout": timeout}, "balance": {"timeout": timeout},
                   "test_order": {"timeout": timeout, "amount": "0.01", "close": True}},
    })


@pytest.fixture
async def sim(clock: FixedClock) -> AsyncIterator[SimServer]:
    async with SimServer(clock=clock) as server:
        gateway = EpayV2Gateway(clock=clock)
        gateway.add_channel("v2", pid=PID, merchant_public_key=public_key_pem(key("merchant")),
                            platform_private_key=private_key_pem(key("platform")))
        server.add_gateway(gateway)
        yield server


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient() as client:
        yield ProbeContext(client, clock, Redactor(secrets()))


def assert_no_secret(*results: ProbeResult) -> None:
    for result in results:
        for secret in secrets():
            assert secret not in result.detail and secret not in (result.code or "")
        assert "PRIVATE KEY" not in result.detail


def test_registered_and_credentials() -> None:
    assert ADAPTERS["epay_v2"] is EpayV2Adapter
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "epay_v2", "weight": 1,
                                        "endpoint": "http://127.0.0.1:1/", "credentials": {"pid": "1"}})
    with pytest.raises(ValueError, match="missing: private_key, platform_public_key"):
        EpayV2Adapter(cfg)
    with pytest.raises(ValueError, match="private_key is not an RSA private key") as exc:
        EpayV2Adapter(channel("http://127.0.0.1:1/", private="bm90IGEga2V5"))
    assert "bm90IGEga2V5" not in str(exc.value)
    with pytest.raises(ValueError, match="platform_public_key is not an RSA public key"):
        EpayV2Adapter(channel("http://127.0.0.1:1/", platform="garbage"))
    assert EpayV2Adapter(channel("http://127.0.0.1:1/", private=merchant_pem())).supports == (
        "query", "test_order", "balance")


CASES = [
    ("healthy", {}, "ok"),
    ("error", {"error_rate": 1.0}, "http_error"),
    ("hang", {"hang_rate": 1.0}, "timeout"),
    ("bad_json", {"bad_json_rate": 1.0}, "bad_response"),
    ("maintenance", {"maintenance_rate": 1.0}, "maintenance"),
    ("bad_signature", {"bad_signature_rate": 1.0}, "bad_signature"),
    ("wrong_private_key", {}, "business_error"),  # -3 RSA签名校验失败
    ("unknown_pid", {}, "business_error"),  # -1 商户不存在！
    ("wrong_platform_key", {}, "bad_signature"),
]
CODES = {"http_error": "500", "maintenance": "-1", "bad_signature": "0"}


@pytest.mark.parametrize("probe", ["query", "test_order", "balance"])
@pytest.mark.parametrize(("case", "faults", "outcome"), CASES)
async def test_outcomes(sim: SimServer, ctx: ProbeContext, probe: str, case: str, faults: dict[str, Any],
                        outcome: str) -> None:
    endpoint = sim.endpoint("v2")
    creds: dict[str, str] = {
        "wrong_private_key": {"private": private_key_pem(key("other"))},
        "unknown_pid": {"pid": "9999"},
        "wrong_platform_key": {"platform": public_key_pem(key("other"))},
    }.get(case, {})
    adapter = EpayV2Adapter(channel(endpoint, timeout="0.3s" if case == "hang" else "2s", **creds))
    if probe == "query":  # ask for a real order: only successful (code 0) replies are signed
        good = EpayV2Adapter(channel(endpoint))
        assert (await run_probe(good, "v2", "test_order", ctx)).outcome == "ok"
        adapter.last_order = good.last_order
    sim.faults("v2").update(**faults)
    result = await run_probe(adapter, "v2", probe, ctx)
    assert result.outcome == outcome, result.detail
    expected = CODES.get(outcome, {"ok": "0", "business_error": "-1" if case == "unknown_pid" else "-3"}.get(outcome))
    assert result.code == expected, result.detail
    if case == "hang":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    if case == "maintenance":
        assert "维护" in result.detail
    if outcome == "ok" and probe != "balance":
        assert adapter.last_order is not None and adapter.last_order in result.detail
    assert_no_secret(result)
    # Never paid; a create only reaches the gateway when the request was authenticated.
    created_here = probe == "test_order" and case in ("healthy", "bad_signature", "wrong_platform_key")
    truth = sim.ground_truth()
    assert len(truth) == (1 if probe == "query" or created_here else 0)
    assert not any(t.paid for t in truth)


async def test_sentinel_query_and_test_order_details(sim: SimServer, ctx: ProbeContext) -> None:
    adapter = EpayV2Adapter(channel(sim.endpoint("v2").rstrip("/"), private=merchant_pem()))
    sentinel = await run_probe(adapter, "v2", "query", ctx)
    assert (sentinel.outcome, sentinel.code) == ("ok", "-1") and "订单号不存在" in sentinel.detail
    created = await run_probe(adapter, "v2", "test_order", ctx)
    assert created.outcome == "ok" and "pay_type jump" in created.detail and "cannot close" in created.detail
    (truth,) = sim.ground_truth()
    assert truth.out_trade_no == adapter.last_order and truth.trade_no in created.detail
    assert str(truth.money) == "0.01"
    found = await run_probe(adapter, "v2", "query", ctx)
    assert (found.outcome, found.code) == ("ok", "0") and "unpaid" in found.detail
    assert_no_secret(sentinel, created, found)


async def test_clock_skew_is_an_auth_error(sim: SimServer, ctx: ProbeContext, clock: FixedClock) -> None:
    skewed = ProbeContext(ctx.client, FixedClock(clock.now() + timedelta(minutes=6)), ctx.redactor)
    result = await run_probe(EpayV2Adapter(channel(sim.endpoint("v2"))), "v2", "balance", skewed)
    assert (result.outcome, result.code) == ("business_error", "-3") and "时间戳" in result.detail


async def test_balance_reads_merchant_info(sim: SimServer, ctx: ProbeContext, clock: FixedClock) -> None:
    adapter = EpayV2Adapter(channel(sim.endpoint("v2")))
    sim.faults("v2").update(balance_growth_per_min=0.5)
    clock.advance(timedelta(minutes=60))
    result = await run_probe(adapter, "v2", "balance", ctx)
    assert (result.outcome, result.code, result.value) == ("ok", "0", 30.0)
    assert "unsettled balance 30.00" in result.detail and "no settlement list" in result.detail
    assert "STALL" not in result.detail


async def test_merchant_states_from_a_stub(ctx: ProbeContext, clock: FixedClock) -> None:
    """Answers the simulator does not give: banned merchant, settlement switched off, missing fields/signature."""
    now = int(clock.now().timestamp())
    platform = private_key_pem(key("platform"))
    answers = iter([
        php_json(signed_reply({"code": 0, "pid": 1001, "status": 0, "money": "1.00"}, platform, now)),
        php_json(signed_reply({"code": "0", "pid": "1001", "status": "1", "pay_status": "0", "settle_status": 0,
                               "money": "12.50"}, platform, now)),
        php_json(signed_reply({"code": 0, "pid": 1001, "status": 1}, platform, now)),
        php_json({"code": 0, "pid": 1001, "status": 1, "money": "1.00"}),
        '{"code":-5,"msg":"接口方法不存在"}',
    ])

    async def info(request: Request) -> Response:
        return PlainTextResponse(next(answers), media_type="text/html")

    async with AppServer(Starlette(routes=[Route("/api/merchant/info", info, methods=["POST"])])) as server:
        adapter = EpayV2Adapter(channel(server.base_url))
        results = [await run_probe(adapter, "v2", "balance", ctx) for _ in range(5)]
    assert [(r.outcome, r.code, r.value) for r in results] == [
        ("business_error", MERCHANT_BANNED, None), ("ok", "0", 12.5), ("bad_response", None, None),
        ("bad_signature", "0", None), ("business_error", "-5", None)]
    assert "settlement STALL" in results[1].detail and "pay_status 0" in results[1].detail
    assert_no_secret(*results)


async def test_unsupported_probe(sim: SimServer, ctx: ProbeContext) -> None:
    result = await run_probe(EpayV2Adapter(channel(sim.endpoint("v2"))), "v2", "refund", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail
