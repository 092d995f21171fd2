"""The WeChat Pay v2 querier over real HTTP against the simulated gateway: pay/orderquery per id with every answer's
signature checked, paid / unpaid / closed / unknown orders, faults as ProbeFailure outcomes, and notify replay of a
lost order to the simulated shop. The API key and the notify signature never appear in a detail."""

from __future__ import annotations

import json
import random
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes.base import ProbeContext, ProbeFailure
from monitor.protocols.wxpay import ACK_XML, parse_xml, sign_md5, to_xml, verify
from monitor.reconcile import QUERIERS, ChannelOrder, Replayer
from monitor.reconcile.wxpay import WxpayQuerier
from monitor.secret import Redactor
from monitor.sim import AppServer, Faults, Shop, SimServer
from monitor.sim.wxpay import WxpayGateway

APPID, MCH_ID, KEY = "wx2421b1c4370ec43b", "10000100", "192006250b4c09247ec02edce69f6a2d"
WRONG_KEY = "0123456789abcdef0123456789abcdef"
CH = "wx-main"


def channel(endpoint: str, *, timeout: str = "2s", **creds: str | None) -> ChannelConfig:
    credentials = {"appid": APPID, "mch_id": MCH_ID, "key": KEY, **creds}
    return ChannelConfig.model_validate({
        "id": CH, "kind": "wxpay_v2", "weight": 10, "endpoint": endpoint,
        "credentials": {k: v for k, v in credentials.items() if v is not None},
        "probes": {"query": {"timeout": timeout}},
    })


@dataclass
class Env:
    sim: SimServer
    gw: WxpayGateway
    ctx: ProbeContext
    clock: FixedClock

    def querier(self, **kw: Any) -> WxpayQuerier:
        return WxpayQuerier(channel(self.sim.endpoint(CH), **kw))

    async def call(self, path: str, **fields: object) -> dict[str, str]:
        request: dict[str, object] = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": secrets.token_hex(16), **fields}
        request["sign"] = sign_md5(request, KEY)
        async with httpx.AsyncClient() as client:
            reply = await client.post(self.sim.endpoint(CH) + path, content=to_xml(request).encode())
        answer = parse_xml(reply.content)
        assert answer["result_code"] == "SUCCESS", answer
        return answer

    async def open(self, out_trade_no: str, fen: int) -> None:
        await self.call("pay/unifiedorder", body=out_trade_no, out_trade_no=out_trade_no, total_fee=fen,
                        spbill_create_ip="127.0.0.1", notify_url="http://127.0.0.1:9/n", trade_type="NATIVE")


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    gw = WxpayGateway(rng=random.Random(7), clock=clock)
    gw.add_channel(CH, appid=APPID, mch_id=MCH_ID, key=KEY, faults=Faults(pay_probability=1.0, callback_drop_rate=1.0))
    async with SimServer() as sim, httpx.AsyncClient() as client:
        sim.add_gateway(gw)
        yield Env(sim, gw, ProbeContext(client, clock, Redactor([KEY, WRONG_KEY])), clock)


def test_registered_by_kind_and_replays() -> None:
    querier = WxpayQuerier(channel("http://127.0.0.1:1/"))
    assert QUERIERS["wxpay_v2"] is WxpayQuerier
    assert querier.kind == "wxpay_v2" and querier.batch > 0
    assert isinstance(querier, Replayer)


@pytest.mark.parametrize("missing", ["appid", "mch_id", "key"])
def test_missing_credentials_are_a_config_problem(missing: str) -> None:
    with pytest.raises(ValueError, match=f"wxpay_v2 needs credentials {missing}"):
        WxpayQuerier(channel("http://127.0.0.1:1/", **{missing: None}))


async def test_paid_unpaid_closed_and_unknown_in_one_batch(env: Env) -> None:
    for out_trade_no, fen in (("PAID000000000001", 1050), ("WAITING000000002", 1), ("CLOSED0000000003", 990)):
        await env.open(out_trade_no, fen)
    env.clock.advance(timedelta(minutes=2, seconds=5))
    assert env.gw.buyer_visits(CH, "PAID000000000001")
    await env.call("pay/closeorder", out_trade_no="CLOSED0000000003")
    env.clock.advance(timedelta(hours=1))

    ids = ["PAID000000000001", "WAITING000000002", "CLOSED0000000003", "NOSUCHORDER00004"]
    answers = await env.querier().lookup(ids, env.ctx)

    assert list(answers) == ids
    sim_order = env.gw.channel(CH).orders["PAID000000000001"]
    paid = answers["PAID000000000001"]
    assert (paid.found, paid.paid, paid.status, paid.trade_no, paid.amount) == (
        True, True, "SUCCESS", sim_order.transaction_id, Decimal("10.50"))
    assert paid.paid_at == datetime(2026, 11, 26, 3, 2, 5, tzinfo=UTC)
    assert paid.fields["time_end"] == "20261126110205" and paid.fields["openid"] == sim_order.openid
    assert paid.fields["total_fee"] == "1050" and "appid" not in paid.fields and "sign" not in paid.fields
    assert [(answers[i].found, answers[i].paid, answers[i].status, answers[i].amount) for i in ids[1:3]] == [
        (True, False, "NOTPAY", None), (True, False, "CLOSED", None)]
    assert answers["NOSUCHORDER00004"] == ChannelOrder("NOSUCHORDER00004", found=False)


FAULTS: list[tuple[str, dict[str, Any], dict[str, Any], str, str | None]] = [
    ("error", {"error_rate": 1.0}, {}, "http_error", "500"),
    ("maintenance", {"maintenance_rate": 1.0}, {}, "maintenance", "SYSTEMERROR"),
    ("bad_json", {"bad_json_rate": 1.0}, {}, "bad_response", None),
    ("hang", {"hang_rate": 1.0}, {"timeout": "0.3s"}, "timeout", None),
    ("bad_signature", {"bad_signature_rate": 1.0}, {}, "bad_signature", None),
    ("wrong_key", {}, {"key": WRONG_KEY}, "business_error", "FAIL"),
]


@pytest.mark.parametrize("ids", [["ABCDEFGH12345678"], ["NOSUCHORDER00004", "ABCDEFGH12345678"]])
@pytest.mark.parametrize(("case", "faults", "kw", "outcome", "code"), FAULTS, ids=[c[0] for c in FAULTS])
async def test_faults_are_probe_failures(env: Env, ids: list[str], case: str, faults: dict[str, Any],
                                         kw: dict[str, Any], outcome: str, code: str | None) -> None:
    await env.open("ABCDEFGH12345678", 1)
    env.gw.faults(CH).update(**faults)
    with pytest.raises(ProbeFailure) as failure:
        await env.querier(**kw).lookup(ids, env.ctx)
    assert (failure.value.outcome, failure.value.code) == (outcome, code), failure.value.detail
    assert failure.value.detail.startswith("pay/orderquery")
    assert KEY not in failure.value.detail and WRONG_KEY not in failure.value.detail


async def test_answers_the_simulator_does_not_give(env: Env) -> None:
    """Stubbed signed answers: REFUND (paid, then refunded), a paid order with a malformed or no time_end, another
    order's answer, a total_fee that is not fen, no trade_state, a business error other than ORDERNOTEXIST."""
    base = {"return_code": "SUCCESS", "appid": APPID, "mch_id": MCH_ID, "nonce_str": "n"}
    answers: dict[str, dict[str, object]] = {
        "REFUNDED": {"result_code": "SUCCESS", "out_trade_no": "REFUNDED", "trade_state": "REFUND", "total_fee": "250",
                     "transaction_id": "4200000000202611260000000001", "time_end": "20261126093000"},
        "ODDTIME": {"result_code": "SUCCESS", "trade_state": "SUCCESS", "time_end": "26-11-2026"},
        "NOTIME": {"result_code": "SUCCESS", "trade_state": "SUCCESS"},
        "MISMATCH": {"result_code": "SUCCESS", "out_trade_no": "ELSE", "trade_state": "NOTPAY"},
        "ODDFEE": {"result_code": "SUCCESS", "trade_state": "SUCCESS", "total_fee": "2.5"},
        "NOSTATE": {"result_code": "SUCCESS"},
        "LIMITED": {"result_code": "FAIL", "err_code": "FREQUENCY_LIMITED", "err_code_des": "频率限制"},
    }

    async def orderquery(request: Request) -> Response:
        asked = parse_xml(await request.body())["out_trade_no"]
        reply: dict[str, object] = {**base, **answers[asked]}
        reply["sign"] = sign_md5(reply, KEY)
        return PlainTextResponse(to_xml(reply))

    async with AppServer(Starlette(routes=[Route("/pay/orderquery", orderquery, methods=["POST"])])) as server:
        querier = WxpayQuerier(channel(server.base_url))
        found = await querier.lookup(["REFUNDED", "ODDTIME", "NOTIME"], env.ctx)
        failures = []
        for order_id in ("MISMATCH", "ODDFEE", "NOSTATE", "LIMITED"):
            with pytest.raises(ProbeFailure) as failure:
                await querier.lookup([order_id], env.ctx)
            failures.append((failure.value.outcome, failure.value.code))
    refunded = found["REFUNDED"]
    assert (refunded.state, refunded.paid, refunded.status, refunded.amount, refunded.trade_no) == (
        "refunded", False, "REFUND", Decimal("2.50"), "4200000000202611260000000001")
    assert refunded.paid_at is None                 # the buyer has the money back: not paid, no pay time
    assert [(found[i].paid, found[i].paid_at) for i in ("ODDTIME", "NOTIME")] == [(True, None), (True, None)]
    assert failures == [("bad_response", None), ("bad_response", None), ("bad_response", None),
                        ("business_error", "FREQUENCY_LIMITED")]


# ---- replay ---------------------------------------------------------------------------------------------


async def test_replay_completes_a_lost_order(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "orders.jsonl"
    async with Shop(log, clock=env.clock) as shop:
        shop.add_channel(CH, endpoint=env.sim.endpoint(CH), kind="wxpay_v2", appid=APPID, mch_id=MCH_ID, key=KEY)
        order = await shop.place_order(CH, "wxpay", "25.50")
        assert order.trade_no is not None
        env.clock.advance(timedelta(seconds=30))
        assert env.gw.buyer_visits(CH, order.trade_no)
        (truth,) = env.sim.ground_truth()
        assert truth.paid and truth.callback_dropped and not truth.callback_sent

        querier = env.querier()
        found = (await querier.lookup([order.order_id], env.ctx))[order.order_id]
        assert found.paid and found.amount == Decimal("25.50")
        result = await querier.replay(found, shop.notify_url_for("wxpay_v2"), env.ctx)
        assert (result.status_code, result.acknowledged) == (200, True), result.detail
        assert KEY not in result.detail

        again = await querier.replay(found, shop.notify_url_for("wxpay_v2"), env.ctx)  # already completed: fail
        assert (again.status_code, again.acknowledged) == (200, False)
        completed = shop.order(order.order_id)
        assert completed is not None and (completed.status, completed.trade_no) == ("completed", truth.trade_no)
    events = [e for e in map(json.loads, log.read_text().splitlines()) if e["order_id"] == order.order_id]
    received = [e for e in events if e["event"] == "callback_received"]
    assert received[0]["verified"] is True and received[0]["trade_no"] == truth.trade_no
    assert received[0]["paid_at"] == "2026-11-26T11:00:30+08:00"
    assert [e["event"] for e in events].count("order_paid") == 1


def paid_order(**fields: str) -> ChannelOrder:
    base = {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "trade_type": "NATIVE", "bank_type": "OTHERS",
            "total_fee": "1", "cash_fee": "1", "fee_type": "CNY", "is_subscribe": "N",
            "transaction_id": "4200000000202611260000000001", "time_end": "20261126110000", "trade_state": "SUCCESS"}
    return ChannelOrder("SHOPORDER0000001", True, "paid", status="SUCCESS", fields={**base, **fields})


@pytest.mark.parametrize(("status", "body", "acknowledged"), [
    (200, ACK_XML, True),
    (200, "success", True),
    (500, "success", False),
    (200, "<xml><return_code>FAIL</return_code></xml>", False),
    (200, "SUCCESS but not exactly", False),
])
async def test_replay_sends_what_wechat_sends(env: Env, status: int, body: str, acknowledged: bool) -> None:
    seen: list[dict[str, str]] = []

    async def notify(request: Request) -> Response:
        assert request.method == "POST" and request.headers["content-type"].startswith("text/xml")
        fields = parse_xml(await request.body())
        seen.append(fields)
        return PlainTextResponse(f"{body} {fields['sign']}" if status == 500 else body, status_code=status)

    async with AppServer(Starlette(routes=[Route("/pay/wepay/notify_url", notify, methods=["POST"])])) as shop:
        result = await env.querier().replay(paid_order(attach="x"), shop.base_url + "/pay/wepay/notify_url", env.ctx)
    (fields,) = seen
    assert verify(fields, KEY)
    assert {k: v for k, v in fields.items() if k not in ("nonce_str", "sign")} == {
        "return_code": "SUCCESS", "result_code": "SUCCESS", "appid": APPID, "mch_id": MCH_ID,
        "trade_type": "NATIVE", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "bank_type": "OTHERS", "total_fee": "1",
        "cash_fee": "1", "fee_type": "CNY", "is_subscribe": "N", "attach": "x",
        "transaction_id": "4200000000202611260000000001", "time_end": "20261126110000",
        "out_trade_no": "SHOPORDER0000001"}
    assert (result.status_code, result.acknowledged) == (status, acknowledged)
    assert fields["sign"] not in result.detail and KEY not in result.detail


async def test_replay_to_a_dead_url_is_a_result(env: Env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await env.querier().replay(paid_order(), f"http://127.0.0.1:{port}/pay/wepay/notify_url", env.ctx)
    assert (result.status_code, result.acknowledged) == (None, False)
    assert KEY not in result.detail


@pytest.mark.parametrize(("order", "reason"), [
    (ChannelOrder("X", found=False), "not plainly paid"),
    (ChannelOrder("X", True, "refunded", status="REFUND"), "not plainly paid (trade_state REFUND)"),
    (ChannelOrder("X", True, "paid", status="SUCCESS", fields={"total_fee": "1"}), "gave no transaction_id, time_end"),
])
async def test_replay_refuses_what_it_must_not_send(env: Env, order: ChannelOrder, reason: str) -> None:
    result = await env.querier().replay(order, "http://127.0.0.1:9/never-called", env.ctx)
    assert (result.status_code, result.acknowledged) == (None, False)
    assert result.detail.startswith("not sent") and reason in result.detail
