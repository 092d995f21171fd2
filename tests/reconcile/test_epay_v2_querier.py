"""The epay V2 (RSA) querier over real HTTP against the simulator: signed api/pay/query per id, every answer's
platform signature verified, faults as ProbeFailure outcomes, no key material in any detail."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes.base import ProbeContext, ProbeFailure
from monitor.protocols import epay_v2 as v2
from monitor.reconcile import QUERIERS, ChannelOrder, Replayer
from monitor.reconcile.epay_v2 import EpayV2Querier
from monitor.secret import Redactor
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.epay_v2 import EpayV2Gateway
from monitor.sim.php import php_json

PID = "1001"
CH = "v2"


@functools.cache
def key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def merchant_b64() -> str:
    return v2.base64_from_pem(v2.private_key_pem(key("merchant")))


def channel(endpoint: str, *, timeout: str = "2s", **creds: str | None) -> ChannelConfig:
    credentials = {"pid": PID, "private_key": merchant_b64(), "platform_public_key": v2.public_key_pem(key("platform")),
                   **creds}
    return ChannelConfig.model_validate({
        "id": "epay-v2", "kind": "epay_v2", "weight": 10, "endpoint": endpoint,
        "credentials": {k: v for k, v in credentials.items() if v is not None},
        "probes": {"query": {"timeout": timeout}},
    })


@dataclass
class Env:
    sim: SimServer
    gw: EpayV2Gateway
    ctx: ProbeContext
    clock: FixedClock

    def querier(self, **kw: Any) -> EpayV2Querier:
        return EpayV2Querier(channel(self.sim.endpoint(CH), **kw))

    async def open(self, out_trade_no: str, money: str) -> str:
        """Open an order with a signed api/pay/create, as a V2 merchant would; its epay trade_no."""
        params = {"pid": PID, "method": "web", "device": "pc", "type": "wxpay", "out_trade_no": out_trade_no,
                  "notify_url": "http://127.0.0.1:9/n", "return_url": "http://127.0.0.1:9/r", "name": "商品",
                  "money": money, "clientip": "127.0.0.1", "timestamp": str(int(self.clock.now().timestamp()))}
        params["sign"] = v2.sign_rsa(params, key("merchant"))
        params["sign_type"] = "RSA"
        async with httpx.AsyncClient() as client:
            reply = await client.post(self.sim.endpoint(CH) + "api/pay/create", data=params)
        trade_no = reply.json()["trade_no"]
        assert isinstance(trade_no, str)
        return trade_no


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    async with SimServer(clock=clock) as sim, httpx.AsyncClient() as client:
        gw = EpayV2Gateway(clock=clock)
        gw.add_channel(CH, pid=PID, merchant_public_key=v2.public_key_pem(key("merchant")),
                       platform_private_key=v2.private_key_pem(key("platform")),
                       faults=Faults(pay_probability=1.0, callback_drop_rate=1.0))
        sim.add_gateway(gw)
        yield Env(sim, gw, ProbeContext(client, clock, Redactor([merchant_b64()])), clock)


def assert_no_secret(text: str) -> None:
    assert merchant_b64()[40:80] not in text and "PRIVATE KEY" not in text


def test_registered_by_kind_and_cannot_replay() -> None:
    querier = EpayV2Querier(channel("http://127.0.0.1:1/"))
    assert QUERIERS["epay_v2"] is EpayV2Querier
    assert querier.kind == "epay_v2" and querier.batch > 0
    assert not isinstance(querier, Replayer)


@pytest.mark.parametrize(("creds", "message"), [
    ({"private_key": None}, "missing: private_key"),
    ({"platform_public_key": None}, "missing: platform_public_key"),
    ({"private_key": "not a key"}, "private_key is not an RSA private key"),
])
def test_bad_credentials_are_a_config_problem(creds: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpayV2Querier(channel("http://127.0.0.1:1/", **creds))


async def test_paid_unpaid_and_unknown_in_one_batch(env: Env) -> None:
    paid_no = await env.open("PAIDORDER0000001", "99")
    unpaid_no = await env.open("UNPAIDORDER00002", "0.01")
    env.clock.advance(timedelta(minutes=3, seconds=7))
    assert env.gw.buyer_visits(CH, paid_no)
    env.clock.advance(timedelta(minutes=10))

    answers = await env.querier().lookup(["PAIDORDER0000001", "UNPAIDORDER00002", "NOSUCHORDER00003"], env.ctx)

    paid = answers["PAIDORDER0000001"]
    assert (paid.found, paid.paid, paid.trade_no, paid.amount, paid.status) == (
        True, True, paid_no, Decimal("99.00"), "1")
    assert paid.paid_at == datetime(2026, 11, 26, 3, 3, 7, tzinfo=UTC)
    assert paid.fields == {"type": "wxpay", "name": "商品", "money": "99.00", "trade_no": paid_no}
    unpaid = answers["UNPAIDORDER00002"]
    assert (unpaid.found, unpaid.paid, unpaid.paid_at, unpaid.trade_no, unpaid.amount) == (
        True, False, None, unpaid_no, Decimal("0.01"))
    assert answers["NOSUCHORDER00003"] == ChannelOrder("NOSUCHORDER00003", found=False)


FAULTS: list[tuple[str, dict[str, Any], dict[str, Any], str, str | None]] = [
    ("error", {"error_rate": 1.0}, {}, "http_error", "500"),
    ("maintenance", {"maintenance_rate": 1.0}, {}, "maintenance", "-1"),
    ("bad_json", {"bad_json_rate": 1.0}, {}, "bad_response", None),
    ("hang", {"hang_rate": 1.0}, {"timeout": "0.3s"}, "timeout", None),
    ("bad_signature", {"bad_signature_rate": 1.0}, {}, "bad_signature", "0"),
    ("other_platform_key", {}, {"platform_public_key": "OTHER"}, "bad_signature", "0"),
    ("wrong_merchant_key", {}, {"private_key": "OTHER"}, "business_error", "-3"),
    ("wrong_pid", {}, {"pid": "1002"}, "business_error", "-1"),
]


@pytest.mark.parametrize(("case", "faults", "kw", "outcome", "code"), FAULTS, ids=[c[0] for c in FAULTS])
async def test_faults_are_probe_failures(env: Env, case: str, faults: dict[str, Any], kw: dict[str, Any],
                                         outcome: str, code: str | None) -> None:
    await env.open("ABCDEFGH12345678", "1")
    env.gw.faults(CH).update(**faults)
    if kw.get("platform_public_key") == "OTHER":
        kw["platform_public_key"] = v2.public_key_pem(key("other"))
    if kw.get("private_key") == "OTHER":
        kw["private_key"] = v2.private_key_pem(key("other"))
    with pytest.raises(ProbeFailure) as failure:
        await env.querier(**kw).lookup(["ABCDEFGH12345678", "ZYXWVUTS87654321"], env.ctx)
    assert (failure.value.outcome, failure.value.code) == (outcome, code), failure.value.detail
    assert failure.value.detail.startswith("api/pay/query: ")
    assert_no_secret(failure.value.detail)


async def test_answers_only_real_servers_give(env: Env) -> None:
    """Stubbed signed answers: a refund (status "2", money a number), an answer about another order, an unsigned
    success; an unsigned 订单号不存在 is believed (V2 errors are never signed)."""
    now = int(env.clock.now().timestamp())
    platform = key("platform")
    answers = {
        "REFUNDED": php_json(v2.signed_reply({"code": 0, "out_trade_no": "REFUNDED", "trade_no": "2026112611000000001",
                                              "status": "2", "money": 12.5, "endtime": "2026-11-26 11:30:00",
                                              "refundmoney": "12.50"}, platform, now)),
        "MISMATCH": php_json(v2.signed_reply({"code": 0, "out_trade_no": "ELSE", "status": 1}, platform, now)),
        "UNSIGNED": php_json({"code": 0, "out_trade_no": "UNSIGNED", "status": 1}),
        "GONE": php_json({"code": -1, "msg": "订单号不存在"}),
    }

    async def query(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        return PlainTextResponse(answers[form["out_trade_no"]], media_type="application/json")

    async with AppServer(Starlette(routes=[Route("/api/pay/query", query, methods=["POST"])])) as server:
        querier = EpayV2Querier(channel(server.base_url))
        found = await querier.lookup(["REFUNDED", "GONE"], env.ctx)
        outcomes = []
        for order_id in ("MISMATCH", "UNSIGNED"):
            with pytest.raises(ProbeFailure) as failure:
                await querier.lookup([order_id], env.ctx)
            outcomes.append(failure.value.outcome)
    refunded = found["REFUNDED"]
    assert (refunded.state, refunded.paid, refunded.status, refunded.amount) == (
        "refunded", False, "2", Decimal("12.5"))
    assert refunded.paid_at is None                 # not paid: no pay time
    assert found["GONE"] == ChannelOrder("GONE", found=False)
    assert outcomes == ["bad_response", "bad_signature"]
