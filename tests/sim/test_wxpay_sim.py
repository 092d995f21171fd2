"""The WeChat Pay v2 gateway simulator over real HTTP on loopback: orders, errors, fault knobs, notifies."""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.protocols.wxpay import ACK_XML, WxpayXmlError, parse_xml, sign_md5, to_xml, verify
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.wxpay import WxpayGateway
from tests.conftest import PATIENCE_S

APPID = "wx2421b1c4370ec43b"
MCH_ID = "10000100"
KEY = "192006250b4c09247ec02edce69f6a2d"
START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)  # 11:12:00 in Beijing
DELAYS = (0.05, 0.1)


@dataclass
class Receiver:
    """A shop notify endpoint: records each notify (body, headers, monotonic time) and answers ``body``."""

    body: str = "success"
    status: int = 200
    hits: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.hits.append(((await request.body()).decode(), dict(request.headers), time.monotonic()))
        return Response(self.body, status_code=self.status, media_type="text/plain")


@dataclass
class Env:
    sim: SimServer
    gw: WxpayGateway
    client: httpx.AsyncClient
    receiver: Receiver
    notify_url: str

    async def call(self, path: str, fields: dict[str, str], *, key: str = KEY, channel: str = "wx") -> httpx.Response:
        body = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", **fields}
        body["sign"] = sign_md5(body, key)
        return await self.client.post(self.sim.endpoint(channel) + path, content=to_xml(body).encode())

    async def order(self, out_trade_no: str = "ABCD1234EFGH5678", **extra: str) -> dict[str, str]:
        fields = {
            "body": out_trade_no,
            "out_trade_no": out_trade_no,
            "total_fee": "1000",
            "spbill_create_ip": "127.0.0.1",
            "notify_url": self.notify_url,
            "trade_type": "NATIVE",
            **extra,
        }
        return parse_xml((await self.call("pay/unifiedorder", fields)).text)

    async def query(self, **by: str) -> dict[str, str]:
        return parse_xml((await self.call("pay/orderquery", by)).text)

    def faults(self) -> Faults:
        return self.gw.faults("wx")


async def _env(**options: Any) -> AsyncIterator[Env]:
    receiver = Receiver()
    async with (
        AppServer(Starlette(routes=[Route("/notify", receiver.handle, methods=["POST"])])) as shop,
        SimServer() as sim,
        httpx.AsyncClient(timeout=5.0, trust_env=False) as client,
    ):
        gw = WxpayGateway(rng=random.Random(1), clock=FixedClock(START), notify_retry_delays=DELAYS, **options)
        sim.add_gateway(gw)
        gw.add_channel("wx", appid=APPID, mch_id=MCH_ID, key=KEY,
                       faults=Faults(pay_probability=1.0, callback_delay_s=0.0))
        yield Env(sim, gw, client, receiver, f"{shop.base_url}/notify")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for e in _env():
        yield e


# ---- the happy path ----------------------------------------------------------------------------------


async def test_native_order_query_pay_notify_ack(env: Env) -> None:
    reply = await env.call("pay/unifiedorder", {
        "body": "ABCD1234EFGH5678", "out_trade_no": "ABCD1234EFGH5678", "total_fee": "1000",
        "spbill_create_ip": "127.0.0.1", "notify_url": env.notify_url, "trade_type": "NATIVE",
    })
    assert reply.status_code == 200
    assert reply.text.startswith("<xml><return_code><![CDATA[SUCCESS]]></return_code>")
    created = parse_xml(reply.text)
    assert verify(created, KEY)
    assert (created["return_msg"], created["result_code"], created["appid"], created["mch_id"]) == (
        "OK", "SUCCESS", APPID, MCH_ID)
    assert created["trade_type"] == "NATIVE"
    assert re.fullmatch(r"wx26111200[0-9a-f]{24}", created["prepay_id"])
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=[A-Za-z0-9]{7}", created["code_url"])
    assert len(created["nonce_str"]) == 32

    unpaid = await env.query(out_trade_no="ABCD1234EFGH5678")
    assert verify(unpaid, KEY)
    assert (unpaid["result_code"], unpaid["trade_state"], unpaid["trade_state_desc"]) == (
        "SUCCESS", "NOTPAY", "订单未支付")
    assert "transaction_id" not in unpaid and "time_end" not in unpaid

    assert env.gw.buyer_visits("wx", "ABCD1234EFGH5678") is True
    assert await env.gw.wait_notifies(PATIENCE_S)
    ((body, headers, _),) = env.receiver.hits
    assert headers["content-type"] == "text/xml"
    notify = parse_xml(body)
    assert verify(notify, KEY)
    assert (notify["return_code"], notify["result_code"], notify["out_trade_no"], notify["total_fee"]) == (
        "SUCCESS", "SUCCESS", "ABCD1234EFGH5678", "1000")
    assert (notify["appid"], notify["mch_id"], notify["trade_type"], notify["time_end"]) == (
        APPID, MCH_ID, "NATIVE", "20261126111200")
    assert {"openid", "nonce_str", "bank_type", "cash_fee", "fee_type", "transaction_id"} <= notify.keys()
    assert re.fullmatch(r"42000\d{5}20261126\d{10}", notify["transaction_id"])

    for by in ({"out_trade_no": "ABCD1234EFGH5678"}, {"transaction_id": notify["transaction_id"]}):
        paid = await env.query(**by)
        assert verify(paid, KEY)
        assert (paid["trade_state"], paid["total_fee"], paid["transaction_id"], paid["time_end"]) == (
            "SUCCESS", "1000", notify["transaction_id"], "20261126111200")

    (truth,) = env.gw.ground_truth()
    assert (truth.channel, truth.trade_no, truth.out_trade_no, truth.money) == (
        "wx", notify["transaction_id"], "ABCD1234EFGH5678", Decimal("10.00"))
    assert truth.paid and truth.paid_at == START and truth.callback_sent and truth.callback_acknowledged
    assert [(a.status_code, a.acknowledged) for a in truth.attempts] == [(200, True)]
    assert env.gw.buyer_visits("wx", "ABCD1234EFGH5678") is False  # already paid


async def test_reordering_reuses_prepay_id_until_params_change_or_paid(env: Env) -> None:
    first = await env.order("AGAIN01")
    assert (await env.order("AGAIN01"))["prepay_id"] == first["prepay_id"]
    changed = await env.order("AGAIN01", total_fee="1001")
    assert verify(changed, KEY)
    assert (changed["return_code"], changed["result_code"], changed["err_code"], changed["err_code_des"]) == (
        "SUCCESS", "FAIL", "OUT_TRADE_NO_USED", "商户订单号重复")
    assert env.gw.buyer_visits("wx", first["prepay_id"]) is True  # a buyer can be found by prepay_id too
    assert (await env.order("AGAIN01"))["err_code"] == "ORDERPAID"


async def test_closeorder(env: Env) -> None:
    await env.order("CLOSE01")
    closed = parse_xml((await env.call("pay/closeorder", {"out_trade_no": "CLOSE01"})).text)
    assert verify(closed, KEY) and closed["result_code"] == "SUCCESS"
    assert (await env.query(out_trade_no="CLOSE01"))["trade_state"] == "CLOSED"
    again = parse_xml((await env.call("pay/closeorder", {"out_trade_no": "CLOSE01"})).text)
    assert again["err_code"] == "ORDERCLOSED"
    assert env.gw.buyer_visits("wx", "CLOSE01") is False
    assert (await env.order("CLOSE01"))["err_code"] == "ORDERCLOSED"

    await env.order("PAID01")
    env.gw.buyer_visits("wx", "PAID01")
    paid = parse_xml((await env.call("pay/closeorder", {"out_trade_no": "PAID01"})).text)
    assert (paid["result_code"], paid["err_code"]) == ("FAIL", "ORDERPAID")
    unknown = parse_xml((await env.call("pay/closeorder", {"out_trade_no": "NOPE"})).text)
    assert unknown["err_code"] == "ORDERNOTEXIST"


# ---- protocol errors -------------------------------------------------------------------------------


async def test_communication_errors_are_unsigned_return_code_fail(env: Env) -> None:
    order = {"body": "B", "out_trade_no": "E1", "total_fee": "1000", "spbill_create_ip": "127.0.0.1",
             "notify_url": env.notify_url, "trade_type": "NATIVE"}
    cases = [
        (await env.call("pay/unifiedorder", order, key="wrong"), "签名错误"),
        (await env.call("pay/unifiedorder", {**order, "appid": "wx0000000000000000"}), "商户号mch_id与appid不匹配"),
        (await env.call("pay/unifiedorder", {k: v for k, v in order.items() if k != "notify_url"}),
         "缺少参数notify_url"),
        (await env.call("pay/unifiedorder", {**order, "total_fee": "10.00"}), "invalid total_fee"),
        (await env.call("pay/unifiedorder", {**order, "trade_type": "CARD"}), "trade_type参数格式错误"),
        (await env.call("pay/orderquery", {}), "缺少参数out_trade_no"),
        (await env.client.post(env.sim.endpoint("wx") + "pay/orderquery", content=b"appid=1&mch_id=2"),
         "XML格式错误"),
        (await env.client.post(env.sim.endpoint("wx") + "pay/orderquery", content=b""), "post数据为空"),
        (await env.client.post(
            env.sim.endpoint("wx") + "pay/orderquery",
            content=b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><appid>&a;</appid></xml>'), "XML格式错误"),
    ]
    for reply, msg in cases:
        assert reply.status_code == 200
        assert parse_xml(reply.text) == {"return_code": "FAIL", "return_msg": msg}
    assert env.gw.ground_truth() == []


async def test_business_errors_are_signed_result_code_fail(env: Env) -> None:
    jsapi = await env.order("J1", trade_type="JSAPI")
    missing = await env.query(out_trade_no="NOPE")
    for reply, code in ((jsapi, "NOAUTH"), (missing, "ORDERNOTEXIST")):
        assert verify(reply, KEY)
        assert (reply["return_code"], reply["result_code"], reply["err_code"]) == ("SUCCESS", "FAIL", code)
    assert (await env.client.get(env.sim.endpoint("wx") + "pay/orderquery")).status_code == 405
    assert (await env.client.post(env.sim.endpoint("nope") + "pay/orderquery")).status_code == 404


# ---- fault knobs over the wire ---------------------------------------------------------------------


async def test_error_hang_bad_body_and_maintenance(env: Env) -> None:
    env.faults().update(error_rate=1.0)
    reply = await env.call("pay/orderquery", {"out_trade_no": "X"})
    assert (reply.status_code, reply.content) == (500, b"")

    env.faults().update(error_rate=0.0, hang_rate=1.0)
    with pytest.raises(httpx.TimeoutException):
        await env.client.post(env.sim.endpoint("wx") + "pay/orderquery", content=b"<xml/>", timeout=0.3)

    env.faults().update(hang_rate=0.0, bad_json_rate=1.0)
    reply = await env.call("pay/orderquery", {"out_trade_no": "X"})
    assert reply.status_code == 200 and reply.text.startswith("<xml><return_code>")
    with pytest.raises(WxpayXmlError):
        parse_xml(reply.text)

    env.faults().update(bad_json_rate=0.0, maintenance_rate=1.0)
    busy = parse_xml((await env.call("pay/unifiedorder", {"out_trade_no": "X"})).text)
    assert verify(busy, KEY)
    assert (busy["return_code"], busy["result_code"], busy["err_code"], busy["err_code_des"]) == (
        "SUCCESS", "FAIL", "SYSTEMERROR", "系统繁忙,请稍后再试")
    assert env.gw.ground_truth() == []


async def test_bad_signature_on_replies_and_notifies(env: Env) -> None:
    env.faults().update(bad_signature_rate=1.0)
    created = await env.order("BADSIG1")
    assert created["result_code"] == "SUCCESS" and created["sign"] and not verify(created, KEY)
    assert env.gw.buyer_visits("wx", "BADSIG1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    ((body, _, _),) = env.receiver.hits
    notify = parse_xml(body)
    assert notify["out_trade_no"] == "BADSIG1" and not verify(notify, KEY)


async def test_pay_probability_zero_leaves_orders_unpaid(env: Env) -> None:
    env.faults().update(pay_probability=0.0)
    await env.order("NOPAY1")
    assert [env.gw.buyer_visits("wx", "NOPAY1") for _ in range(5)] == [False] * 5
    assert (await env.query(out_trade_no="NOPAY1"))["trade_state"] == "NOTPAY"
    (truth,) = env.gw.ground_truth()
    assert not truth.paid and truth.paid_at is None and not truth.callback_sent
    assert truth.trade_no.startswith("wx")  # the prepay_id until paid


async def test_dropped_callback_is_paid_without_notify(env: Env) -> None:
    env.faults().update(callback_drop_rate=1.0)
    await env.order("DROP1")
    assert env.gw.buyer_visits("wx", "DROP1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert env.receiver.hits == []
    assert (await env.query(out_trade_no="DROP1"))["trade_state"] == "SUCCESS"  # 掉单: paid, shop never told
    (truth,) = env.gw.ground_truth()
    assert truth.paid and truth.callback_dropped and not truth.callback_sent and not truth.callback_acknowledged


async def test_duplicate_callback_sends_two_notifies(env: Env) -> None:
    env.faults().update(duplicate_callback_rate=1.0)
    await env.order("DUP1")
    env.gw.buyer_visits("wx", "DUP1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert len(env.receiver.hits) == 2
    assert all(parse_xml(body)["out_trade_no"] == "DUP1" for body, _, _ in env.receiver.hits)
    (truth,) = env.gw.ground_truth()
    assert [a.acknowledged for a in truth.attempts] == [True, True]


async def test_callback_delay(env: Env) -> None:
    env.faults().update(callback_delay_s=0.2)
    await env.order("LATE1")
    began = time.monotonic()
    env.gw.buyer_visits("wx", "LATE1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    ((_, _, at),) = env.receiver.hits
    assert at - began >= 0.19


async def test_unacknowledged_notify_is_retried_on_the_schedule_then_given_up(env: Env) -> None:
    env.receiver.body, env.receiver.status = "fail", 200
    await env.order("RETRY1")
    env.gw.buyer_visits("wx", "RETRY1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    times = [at for _, _, at in env.receiver.hits]
    assert len(times) == 1 + len(DELAYS)
    assert times[1] - times[0] >= DELAYS[0] - 0.01
    assert times[2] - times[1] >= DELAYS[1] - 0.01
    (truth,) = env.gw.ground_truth()
    assert truth.paid and truth.callback_sent and not truth.callback_acknowledged
    assert [(a.status_code, a.acknowledged) for a in truth.attempts] == [(200, False)] * 3


async def test_unreachable_notify_url_is_recorded(env: Env) -> None:
    env.notify_url = "http://127.0.0.1:9/notify"
    await env.order("DOWN1")
    env.gw.buyer_visits("wx", "DOWN1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert len(truth.attempts) == 3
    assert all(a.status_code is None and a.error and not a.acknowledged for a in truth.attempts)


async def test_plain_success_can_be_refused_while_xml_ack_counts() -> None:
    async for env in _env(accept_plain_success=False):
        await env.order("PLAIN1")
        env.gw.buyer_visits("wx", "PLAIN1")
        assert await env.gw.wait_notifies(PATIENCE_S)
        assert len(env.receiver.hits) == 3  # "success" is not an ack here: every retry was used

        env.receiver.body = ACK_XML
        await env.order("XMLACK1")
        env.gw.buyer_visits("wx", "XMLACK1")
        assert await env.gw.wait_notifies(PATIENCE_S)
        assert len(env.receiver.hits) == 4
        acked = {t.out_trade_no: t.callback_acknowledged for t in env.gw.ground_truth()}
        assert acked == {"PLAIN1": False, "XMLACK1": True}


def test_channel_validation_and_repr_hides_the_key() -> None:
    gw = WxpayGateway()
    channel = gw.add_channel("wx", appid=APPID, mch_id=MCH_ID, key=KEY)
    assert KEY not in repr(channel)
    with pytest.raises(ValueError):
        gw.add_channel("wx", appid=APPID, mch_id=MCH_ID, key=KEY)
    with pytest.raises(ValueError):
        gw.add_channel("bad/id", appid=APPID, mch_id=MCH_ID, key=KEY)
    with pytest.raises(ValueError):
        gw.add_channel("nokey", appid=APPID, mch_id=MCH_ID, key="")
    with pytest.raises(KeyError):
        gw.buyer_visits("wx", "NOPE")
