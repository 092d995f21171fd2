"""The WeChat Pay v2 probes over real HTTP against the simulated gateway: every fault maps to its probe
outcome, test orders are always closed (even when the create answer fails its check), the API key never leaks."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.wxpay import WxpayAdapter
from monitor.protocols.wxpay import parse_xml, sign_md5, to_xml
from monitor.secret import Redactor
from monitor.sim import AppServer, SimServer
from monitor.sim.wxpay import WxpayGateway

APPID, MCH_ID, KEY = "wx2421b1c4370ec43b", "10000100", "192006250b4c09247ec02edce69f6a2d"
WRONG_KEY = "0123456789abcdef0123456789abcdef"
CH = "wx-main"


@dataclass
class Env:
    sim: SimServer
    gw: WxpayGateway
    ctx: ProbeContext

    def adapter(self, timeout: str = "2s", **creds: str | None) -> WxpayAdapter:
        return WxpayAdapter(channel(self.sim.endpoint(CH), timeout, creds=creds))

    def states(self) -> list[str]:
        return [o.state for o in self.gw.channel(CH).orders.values()]


def channel(endpoint: str, timeout: str = "2s", *, close: bool = True, amount: str = "0.01",
            creds: dict[str, str | None] | None = None) -> ChannelConfig:
    credentials = {"appid": APPID, "mch_id": MCH_ID, "key": KEY, **(creds or {})}
    return ChannelConfig.model_validate({
        "id": CH, "kind": "wxpay_v2", "weight": 10, "endpoint": endpoint,
        "credentials": {k: v for k, v in credentials.items() if v is not None},
        "probes": {"query": {"timeout": timeout}, "test_order": {"timeout": timeout, "amount": amount, "close": close}},
    })


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    gw = WxpayGateway(rng=random.Random(7), clock=clock)
    gw.add_channel(CH, appid=APPID, mch_id=MCH_ID, key=KEY)
    async with SimServer() as sim, httpx.AsyncClient() as client:
        sim.add_gateway(gw)
        yield Env(sim, gw, ProbeContext(client, clock, Redactor([KEY, WRONG_KEY])))


def test_registered_by_kind() -> None:
    assert ADAPTERS["wxpay_v2"] is WxpayAdapter
    assert WxpayAdapter.supports == ("query", "test_order")


CASES = [
    ({}, {}, "ok"),
    ({"hang_rate": 1.0}, {}, "timeout"),
    ({"error_rate": 1.0}, {}, "http_error"),
    ({"bad_json_rate": 1.0}, {}, "bad_response"),  # truncated XML
    ({"bad_signature_rate": 1.0}, {}, "bad_signature"),
    ({"maintenance_rate": 1.0}, {}, "maintenance"),
    ({}, {"key": WRONG_KEY}, "business_error"),  # return_code FAIL 签名错误
]


@pytest.mark.parametrize(("faults", "creds", "outcome"), CASES)
async def test_query_outcomes(env: Env, faults: dict[str, Any], creds: dict[str, str], outcome: str) -> None:
    env.sim.faults(CH).update(**faults)
    result = await run_probe(env.adapter("0.3s", **creds), CH, "query", env.ctx)
    assert result.outcome == outcome, result.detail
    expected_code = {"ok": "ORDERNOTEXIST", "http_error": "500", "maintenance": "SYSTEMERROR",
                     "business_error": "FAIL"}.get(outcome)
    assert result.code == expected_code, result.detail
    if outcome == "business_error":
        assert "签名错误" in result.detail
    if outcome == "timeout":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    assert all(v not in result.detail for v in (KEY, WRONG_KEY, APPID, MCH_ID))


@pytest.mark.parametrize(("faults", "creds", "outcome"), CASES)
async def test_test_order_outcomes_leave_no_open_order(env: Env, faults: dict[str, Any], creds: dict[str, str],
                                                       outcome: str) -> None:
    env.sim.faults(CH).update(**faults)
    result = await run_probe(env.adapter("0.3s", **creds), CH, "test_order", env.ctx)
    assert result.outcome == outcome, result.detail
    assert "NOTPAY" not in env.states()
    if outcome == "ok":
        assert result.code == "SUCCESS" and "code_url weixin://wxpay/bizpayurl?pr=" in result.detail
        assert result.detail.endswith("; closed") and env.states() == ["CLOSED"]
        assert [o.total_fee for o in env.gw.channel(CH).orders.values()] == [1]
    if outcome == "bad_signature":  # created, then closed; the close answer fails its check too
        assert env.states() == ["CLOSED"] and "close failed" in result.detail
    if outcome in ("maintenance", "business_error"):  # refused: no order, no close attempted
        assert env.states() == [] and "close" not in result.detail
    assert all(v not in result.detail for v in (KEY, WRONG_KEY, APPID, MCH_ID))


async def test_close_runs_when_the_create_answer_fails_its_check(env: Env) -> None:
    """The create answer fails its signature check (the order was made), the close is clean: closed, outcome kept."""
    faults = env.sim.faults(CH)

    async def create_then_break(request: httpx.Request) -> None:
        if request.url.path.endswith("unifiedorder"):
            faults.update(bad_signature_rate=1.0)
        else:
            faults.update(bad_signature_rate=0.0)

    env.ctx.client.event_hooks["request"] = [create_then_break]
    result = await run_probe(env.adapter(), CH, "test_order", env.ctx)
    assert (result.outcome, result.code) == ("bad_signature", None)
    assert result.detail.endswith("; order closed") and env.states() == ["CLOSED"]


async def test_query_asks_for_the_last_test_order(env: Env) -> None:
    adapter = env.adapter()
    assert (await run_probe(adapter, CH, "query", env.ctx)).detail.startswith("sentinel order")
    assert (await run_probe(adapter, CH, "test_order", env.ctx)).outcome == "ok"
    result = await run_probe(adapter, CH, "query", env.ctx)
    assert (result.outcome, result.code, result.detail) == ("ok", "SUCCESS", "last test order: trade_state CLOSED")


async def test_without_close_the_order_stays_open_and_amount_is_in_fen(env: Env) -> None:
    cfg = channel(env.sim.endpoint(CH).rstrip("/"), close=False, amount="0.001")
    result = await run_probe(WxpayAdapter(cfg), CH, "test_order", env.ctx)
    assert result.outcome == "ok" and "closed" not in result.detail and "1 fen" in result.detail
    assert env.states() == ["NOTPAY"]


async def test_wrong_mch_id_is_a_business_error(env: Env) -> None:
    result = await run_probe(env.adapter(mch_id="10000999"), CH, "query", env.ctx)
    assert (result.outcome, result.code) == ("business_error", "FAIL") and "不匹配" in result.detail


async def test_answers_the_simulator_does_not_give(env: Env) -> None:
    """A signed answer for another merchant, a signed unknown err_code, no return_code, an unsigned SUCCESS."""
    base = {"return_code": "SUCCESS", "appid": APPID, "mch_id": MCH_ID, "nonce_str": "n"}

    def signed(**fields: str) -> str:
        return to_xml({**base, **fields, "sign": sign_md5({**base, **fields}, KEY)})

    bodies = iter([
        signed(mch_id="1", result_code="FAIL", err_code="ORDERNOTEXIST"),
        signed(result_code="FAIL", err_code="NOAUTH", err_code_des="商户无此接口权限"),
        "<xml><foo>1</foo></xml>",
        to_xml({**base, "result_code": "FAIL", "err_code": "ORDERNOTEXIST"}),
    ])

    async def answer(request: Request) -> Response:
        assert parse_xml(await request.body())["out_trade_no"] == "paymon-probe-sentinel"
        return Response(next(bodies), media_type="text/plain")

    async with AppServer(Starlette(routes=[Route("/pay/orderquery", answer, methods=["POST"])])) as server:
        adapter = WxpayAdapter(channel(server.base_url + "/"))
        results = [await run_probe(adapter, CH, "query", env.ctx) for _ in range(4)]
    assert [(r.outcome, r.code) for r in results] == [
        ("bad_response", None), ("business_error", "NOAUTH"), ("bad_response", None), ("bad_signature", None),
    ]


async def test_unsupported_probe_type(env: Env) -> None:
    result = await run_probe(env.adapter(), CH, "balance", env.ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail


def test_missing_credentials_are_a_config_problem() -> None:
    with pytest.raises(ValueError, match="wxpay_v2 needs credentials mch_id, key"):
        WxpayAdapter(channel("http://127.0.0.1:1/x/", creds={"mch_id": None, "key": None}))
