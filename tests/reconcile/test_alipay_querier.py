"""The Alipay 当面付 querier over real HTTP against the simulated gateway: alipay.trade.query per id, every answer's
signature verified, paid / unpaid / closed / unknown trades, faults as ProbeFailure outcomes, no key in a detail."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes.base import ProbeContext, ProbeFailure
from monitor.protocols.alipay import (
    TRADE_FINISHED,
    format_alipay_time,
    generate_private_key_pem,
    public_key_pem,
    response_json,
    sign_response_node,
    sign_rsa2,
    strip_pem,
)
from monitor.reconcile import QUERIERS, ChannelOrder, Replayer
from monitor.reconcile.alipay import AlipayQuerier
from monitor.secret import Redactor
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.alipay import AlipayGateway

APP_ID = "2021000000000042"
APP_KEY = generate_private_key_pem()
OTHER_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
CH = "ali-main"


def channel(endpoint: str, *, timeout: str = "2s", **creds: str | None) -> ChannelConfig:
    credentials = {"app_id": APP_ID, "private_key": strip_pem(APP_KEY),
                   "alipay_public_key": strip_pem(public_key_pem(PLATFORM_KEY)), **creds}
    return ChannelConfig.model_validate({
        "id": CH, "kind": "alipay_f2f", "weight": 10, "endpoint": endpoint,
        "credentials": {k: v for k, v in credentials.items() if v is not None},
        "probes": {"query": {"timeout": timeout}},
    })


@dataclass
class Env:
    sim: SimServer
    gw: AlipayGateway
    ctx: ProbeContext
    clock: FixedClock

    def querier(self, **kw: Any) -> AlipayQuerier:
        return AlipayQuerier(channel(self.sim.endpoint(CH), **kw))

    async def call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        """One signed gateway call as the shop makes it (no notify_url: no notify is ever sent)."""
        params = {"app_id": APP_ID, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
                  "version": "1.0", "timestamp": format_alipay_time(self.clock.now()),
                  "biz_content": json.dumps(biz, separators=(",", ":"))}
        params["sign"] = sign_rsa2(params, APP_KEY)
        async with httpx.AsyncClient() as client:
            reply = await client.post(self.sim.endpoint(CH) + "gateway.do", data=params)
        node = reply.json()[method.replace(".", "_") + "_response"]
        assert node["code"] == "10000", node
        return dict(node)

    async def precreate(self, out_trade_no: str, amount: float) -> None:
        await self.call("alipay.trade.precreate", {"out_trade_no": out_trade_no, "total_amount": amount,
                                                   "subject": out_trade_no})


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    gw = AlipayGateway(rng=random.Random(7), clock=clock, platform_private_key=PLATFORM_KEY)
    gw.add_channel(CH, app_id=APP_ID, app_private_key=APP_KEY, faults=Faults(pay_probability=1.0))
    async with SimServer() as sim, httpx.AsyncClient() as client:
        sim.add_gateway(gw)
        secrets = [APP_KEY, strip_pem(APP_KEY), OTHER_KEY, strip_pem(OTHER_KEY)]
        yield Env(sim, gw, ProbeContext(client, clock, Redactor(secrets)), clock)


def assert_no_secret(text: str) -> None:
    for key in (APP_KEY, OTHER_KEY):
        assert strip_pem(key)[40:80] not in text and "PRIVATE KEY" not in text


def test_registered_by_kind_and_cannot_replay() -> None:
    querier = AlipayQuerier(channel("http://127.0.0.1:1/"))
    assert QUERIERS["alipay_f2f"] is AlipayQuerier
    assert querier.kind == "alipay_f2f" and querier.batch > 0
    assert not isinstance(querier, Replayer)


@pytest.mark.parametrize(("creds", "message"), [
    ({"app_id": None}, "needs credentials app_id"),
    ({"alipay_public_key": None}, "needs credentials alipay_public_key"),
    ({"private_key": "not a key"}, "private_key is not an RSA private key"),
])
def test_bad_credentials_are_a_config_problem(creds: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlipayQuerier(channel("http://127.0.0.1:1/", **creds))


async def test_paid_unpaid_closed_and_unknown_in_one_batch(env: Env) -> None:
    for out_trade_no, amount in (("PAID000000000001", 10.5), ("FINISHED00000002", 0.01), ("WAITING000000003", 9.9),
                                 ("CLOSED0000000004", 1)):
        await env.precreate(out_trade_no, amount)
    env.clock.advance(timedelta(seconds=42))
    assert env.gw.buyer_visits(CH, "PAID000000000001") and env.gw.buyer_visits(CH, "FINISHED00000002")
    env.gw.channel(CH).orders["FINISHED00000002"].status = TRADE_FINISHED  # the refund window passed
    await env.call("alipay.trade.close", {"out_trade_no": "CLOSED0000000004"})
    env.clock.advance(timedelta(hours=1))

    ids = ["PAID000000000001", "FINISHED00000002", "WAITING000000003", "CLOSED0000000004", "NOSUCHORDER00005"]
    answers = await env.querier().lookup(ids, env.ctx)

    assert list(answers) == ids
    paid = answers["PAID000000000001"]
    trade_no = env.gw.channel(CH).orders["PAID000000000001"].trade_no
    assert paid == ChannelOrder(
        "PAID000000000001", found=True, state="paid", paid_at=datetime(2026, 11, 26, 3, 0, 42, tzinfo=UTC),
        trade_no=trade_no, amount=Decimal("10.50"), status="TRADE_SUCCESS",
        fields={"trade_status": "TRADE_SUCCESS", "total_amount": "10.50", "receipt_amount": "10.50",
                "buyer_pay_amount": "10.50", "send_pay_date": "2026-11-26 11:00:42"})
    finished = answers["FINISHED00000002"]
    assert (finished.paid, finished.status, finished.amount) == (True, TRADE_FINISHED, Decimal("0.01"))
    assert [(answers[i].found, answers[i].paid, answers[i].status, answers[i].paid_at) for i in ids[2:4]] == [
        (True, False, "WAIT_BUYER_PAY", None), (True, False, "TRADE_CLOSED", None)]
    assert answers["NOSUCHORDER00005"] == ChannelOrder("NOSUCHORDER00005", found=False)


FAULTS: list[tuple[str, dict[str, Any], dict[str, Any], str, str | None]] = [
    ("error", {"error_rate": 1.0}, {}, "http_error", "500"),
    ("maintenance", {"maintenance_rate": 1.0}, {}, "maintenance", "20000/isp.unknow-error"),
    ("bad_json", {"bad_json_rate": 1.0}, {}, "bad_response", None),
    ("hang", {"hang_rate": 1.0}, {"timeout": "0.3s"}, "timeout", None),
    ("bad_signature", {"bad_signature_rate": 1.0}, {}, "bad_signature", None),
    ("wrong_app_key", {}, {"private_key": strip_pem(OTHER_KEY)}, "business_error", "40002/isv.invalid-signature"),
    ("wrong_app_id", {}, {"app_id": "2021000000000099"}, "business_error", "40002/isv.invalid-app-id"),
    ("other_platform_key", {}, {"alipay_public_key": strip_pem(public_key_pem(OTHER_KEY))}, "bad_signature", None),
]


@pytest.mark.parametrize("ids", [["ABCDEFGH12345678"], ["NOSUCHORDER00005"]])
@pytest.mark.parametrize(("case", "faults", "kw", "outcome", "code"), FAULTS, ids=[c[0] for c in FAULTS])
async def test_faults_are_probe_failures(env: Env, ids: list[str], case: str, faults: dict[str, Any],
                                         kw: dict[str, Any], outcome: str, code: str | None) -> None:
    await env.precreate("ABCDEFGH12345678", 1)
    env.gw.faults(CH).update(**faults)
    with pytest.raises(ProbeFailure) as failure:
        await env.querier(**kw).lookup(ids, env.ctx)
    assert (failure.value.outcome, failure.value.code) == (outcome, code), failure.value.detail
    assert failure.value.detail.startswith("alipay.trade.query")
    assert_no_secret(failure.value.detail)


def signed(node: dict[str, Any]) -> str:
    text = response_json(node)
    sign = sign_response_node(text, PLATFORM_KEY)
    return '{"alipay_trade_query_response":' + text + ',"sign":' + response_json(sign) + "}"


async def test_answers_the_simulator_does_not_give(env: Env) -> None:
    """Stubbed answers: unsigned success and not-found (never believed), an answer about another trade, no
    trade_status, a paid trade without send_pay_date, an amount that is not a number."""
    not_exist = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
    answers = {
        "UNSIGNED": '{"alipay_trade_query_response":{"code":"10000","trade_status":"TRADE_SUCCESS"}}',
        "UNSIGNEDGONE": '{"alipay_trade_query_response":' + json.dumps(not_exist) + "}",
        "MISMATCH": signed({"code": "10000", "out_trade_no": "ELSE", "trade_status": "WAIT_BUYER_PAY"}),
        "NOSTATUS": signed({"code": "10000", "out_trade_no": "NOSTATUS"}),
        "ODDAMOUNT": signed({"code": "10000", "trade_status": "TRADE_SUCCESS", "total_amount": "lots"}),
        "NODATE": signed({"code": "10000", "trade_status": "TRADE_SUCCESS", "total_amount": "3.00",
                          "send_pay_date": "yesterday", "trade_no": "2026112622001000000000000001"}),
    }

    async def gateway(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        return PlainTextResponse(answers[json.loads(form["biz_content"])["out_trade_no"]])

    async with AppServer(Starlette(routes=[Route("/gateway.do", gateway, methods=["POST"])])) as server:
        querier = AlipayQuerier(channel(server.base_url))
        outcomes = []
        for order_id in ("UNSIGNED", "UNSIGNEDGONE", "MISMATCH", "NOSTATUS", "ODDAMOUNT"):
            with pytest.raises(ProbeFailure) as failure:
                await querier.lookup([order_id], env.ctx)
            outcomes.append(failure.value.outcome)
        nodate = (await querier.lookup(["NODATE"], env.ctx))["NODATE"]
    assert outcomes == ["bad_signature", "bad_signature", "bad_response", "bad_response", "bad_response"]
    assert (nodate.paid, nodate.paid_at, nodate.amount) == (True, None, Decimal("3.00"))
