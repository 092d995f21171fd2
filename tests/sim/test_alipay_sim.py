"""The Alipay 当面付 gateway simulator over real HTTP, driven by python-alipay-sdk and by raw signed forms.

python-alipay-sdk has no option for the gateway URL (``__init__`` sets ``self._gateway`` from ``debug``), so
:class:`LoopbackAliPay` is a subclass that points that attribute at the simulator; everything else (signing,
the GET request via ``urlopen``, response and notify verification) is the SDK's own code. Its calls block, so
they run in a thread while the event loop serves the simulator.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.protocols.alipay import (
    generate_private_key_pem,
    public_key_pem,
    sign_rsa2,
    strip_pem,
    verify_response,
    verify_rsa2,
)
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.alipay import DEFAULT_NOTIFY_RETRY_DELAYS, AlipayGateway
from tests.conftest import PATIENCE_S

APP_ID = "2021000000000001"
APP_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
PLATFORM_PUB = public_key_pem(PLATFORM_KEY)
START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)  # 11:12:00 in Beijing
PRECREATE = "alipay.trade.precreate"


class LoopbackAliPay(AliPay):
    """The SDK's ``AliPay`` with its gateway URL pointed at a simulated channel."""

    def __init__(self, gateway_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway = gateway_url


@dataclass
class Receiver:
    """The shop's notify endpoint: records each form (and when it came), answers ``body``."""

    body: str = "success"
    hits: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.hits.append(dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)))
        self.times.append(time.monotonic())
        return PlainTextResponse(self.body)


@dataclass
class Env:
    sim: SimServer
    gw: AlipayGateway
    client: httpx.AsyncClient
    receiver: Receiver
    notify_url: str

    @property
    def url(self) -> str:
        return self.sim.endpoint("ali") + "gateway.do"

    def sdk(self, app_key: str = APP_KEY, channel: str = "ali") -> LoopbackAliPay:
        return LoopbackAliPay(
            self.sim.endpoint(channel) + "gateway.do", appid=APP_ID, app_notify_url=self.notify_url,
            app_private_key_string=app_key, alipay_public_key_string=PLATFORM_PUB,
        )

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def post(self, method: str, biz: dict[str, Any] | None = None, key: str = APP_KEY, /,
                   **overrides: str | None) -> httpx.Response:
        """A dujiaoka/YSD-style request: urlencoded POST to ``gateway.do?charset=utf-8``."""
        params: dict[str, str | None] = {
            "app_id": APP_ID, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
            "version": "1.0", "timestamp": "2026-11-26 11:12:00", "notify_url": self.notify_url,
            "biz_content": json.dumps(biz or {}, ensure_ascii=False),
        }
        params.update(overrides)
        form = {k: v for k, v in params.items() if v}
        if "sign" not in overrides:
            form["sign"] = sign_rsa2(form, key)
        return await self.client.post(self.url, params={"charset": "utf-8"}, data=form)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    gw = AlipayGateway(rng=random.Random(5), clock=FixedClock(START), platform_private_key=PLATFORM_KEY,
                       notify_retry_delays=(0.05, 0.05))
    async with (
        AppServer(Starlette(routes=[Route("/notify", receiver.handle, methods=["POST"])])) as shop,
        SimServer() as sim,
        httpx.AsyncClient(timeout=5.0, trust_env=False) as client,
    ):
        sim.add_gateway(gw)
        gw.add_channel("ali", app_id=APP_ID, app_public_key=public_key_pem(APP_KEY),
                       faults=Faults(pay_probability=1.0, callback_delay_s=0.0))
        yield Env(sim, gw, client, receiver, f"{shop.base_url}/notify")


def node(reply: httpx.Response, method: str = PRECREATE) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()
    found: dict[str, Any] = body.get(method.replace(".", "_") + "_response") or body["error_response"]
    return found


# ---- the happy path, through the SDK ------------------------------------------------------------------


async def test_sdk_precreate_query_pay_notify_ack(env: Env) -> None:
    alipay = env.sdk()
    created = await env.call(alipay.api_alipay_trade_precreate, subject="ORDER1", out_trade_no="ORDER1",
                             total_amount=10.5)
    assert created["code"] == "10000" and created["msg"] == "Success" and created["out_trade_no"] == "ORDER1"
    assert created["qr_code"].startswith("https://qr.alipay.com/bax") and len(created["qr_code"]) == 46

    waiting = await env.call(alipay.api_alipay_trade_query, out_trade_no="ORDER1")
    assert (waiting["code"], waiting["trade_status"], waiting["total_amount"]) == ("10000", "WAIT_BUYER_PAY", "10.50")
    assert "send_pay_date" not in waiting and "buyer_logon_id" not in waiting
    trade_no = waiting["trade_no"]
    assert len(trade_no) == 28 and trade_no.startswith("20261126")

    assert env.gw.buyer_visits("ali", "ORDER1") is True
    assert env.gw.buyer_visits("ali", "ORDER1") is False  # already paid
    assert await env.gw.wait_notifies(PATIENCE_S)

    (notify,) = env.receiver.hits
    assert set(notify) == {
        "notify_time", "notify_type", "notify_id", "app_id", "charset", "version", "sign_type", "sign", "trade_no",
        "out_trade_no", "trade_status", "total_amount", "receipt_amount", "buyer_pay_amount", "gmt_create",
        "gmt_payment", "subject", "buyer_id", "seller_id",
    }
    assert (notify["trade_no"], notify["out_trade_no"], notify["trade_status"], notify["total_amount"]) == (
        trade_no, "ORDER1", "TRADE_SUCCESS", "10.50")
    assert (notify["notify_type"], notify["sign_type"], notify["app_id"]) == ("trade_status_sync", "RSA2", APP_ID)
    assert notify["gmt_payment"] == notify["gmt_create"] == notify["notify_time"] == "2026-11-26 11:12:00"
    data = dict(notify)
    assert alipay.verify(data, data.pop("sign")) is True  # the SDK's notify check
    assert verify_rsa2(notify, notify["sign"], PLATFORM_PUB, notify=True)

    paid = await env.call(alipay.api_alipay_trade_query, trade_no=trade_no)
    assert (paid["trade_status"], paid["out_trade_no"], paid["buyer_pay_amount"]) == (
        "TRADE_SUCCESS", "ORDER1", "10.50")
    assert paid["send_pay_date"] == "2026-11-26 11:12:00" and "******" in paid["buyer_logon_id"]
    (truth,) = env.gw.ground_truth()
    assert (truth.paid, truth.callback_sent, truth.callback_acknowledged, truth.callback_dropped) == (
        True, True, True, False)
    assert (truth.trade_no, truth.money, truth.channel) == (trade_no, Decimal("10.50"), "ali")


async def test_dujiaoka_style_form_post_gets_a_raw_signed_body(env: Env) -> None:
    reply = await env.post(PRECREATE, {"out_trade_no": "D1", "total_amount": 1, "subject": "D1", "product_code": ""})
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/html;charset=utf-8"
    assert reply.text.startswith('{"alipay_trade_precreate_response":{"code":"10000","msg":"Success",')
    assert '"qr_code":"https:\\/\\/qr.alipay.com\\/bax' in reply.text
    assert verify_response(reply.text, PRECREATE, PLATFORM_PUB)
    assert env.gw.ground_truth()[0].money == Decimal("1.00")
    assert env.gw.ground_truth()[0].created_at == START


async def test_sdk_close_and_query_errors(env: Env) -> None:
    alipay = env.sdk()
    missing = await env.call(alipay.api_alipay_trade_query, out_trade_no="NOPE")
    assert (missing["code"], missing["msg"], missing["sub_code"], missing["out_trade_no"]) == (
        "40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "NOPE")
    for ref in ("OPEN", "PAID"):
        await env.call(alipay.api_alipay_trade_precreate, subject=ref, out_trade_no=ref, total_amount="2.00")
    env.gw.buyer_visits("ali", "PAID")

    closed = await env.call(alipay.api_alipay_trade_close, out_trade_no="OPEN")
    assert (closed["code"], closed["out_trade_no"]) == ("10000", "OPEN")
    assert (await env.call(alipay.api_alipay_trade_query, out_trade_no="OPEN"))["trade_status"] == "TRADE_CLOSED"
    assert env.gw.buyer_visits("ali", "OPEN") is False
    for ref in ("PAID", "OPEN"):
        refused = await env.call(alipay.api_alipay_trade_close, out_trade_no=ref)
        assert (refused["code"], refused["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    gone = await env.call(alipay.api_alipay_trade_close, trade_no="2026112622001000000000000000")
    assert gone["sub_code"] == "ACQ.TRADE_NOT_EXIST"


async def test_precreate_resubmission_and_bad_business_params(env: Env) -> None:
    biz = {"out_trade_no": "R1", "total_amount": "3.00", "subject": "R1"}
    first = node(await env.post(PRECREATE, biz))
    assert node(await env.post(PRECREATE, biz))["qr_code"] == first["qr_code"]
    changed = node(await env.post(PRECREATE, {**biz, "total_amount": "4.00"}))
    assert (changed["code"], changed["sub_code"]) == ("40004", "ACQ.CONTEXT_INCONSISTENT")
    env.gw.buyer_visits("ali", "R1")
    assert node(await env.post(PRECREATE, biz))["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"
    for bad in ({**biz, "out_trade_no": "R2", "total_amount": "0"}, {**biz, "out_trade_no": "R3",
                "total_amount": "1.001"}, {"out_trade_no": "R4", "total_amount": 1}, {**biz, "out_trade_no": ""}):
        reply = await env.post(PRECREATE, bad)
        assert node(reply)["sub_code"] == "ACQ.INVALID_PARAMETER" and verify_response(reply.text, PRECREATE,
                                                                                       PLATFORM_PUB)
    assert len(env.gw.ground_truth()) == 1
    for raw in ("[1]", "not json"):
        reply = await env.post("alipay.trade.query", None, APP_KEY, biz_content=raw)
        assert node(reply, "alipay.trade.query")["sub_code"] == "ACQ.INVALID_PARAMETER"


# ---- public-parameter and signature errors ------------------------------------------------------------


OTHER_KEY = generate_private_key_pem()


@pytest.mark.parametrize(
    ("method", "key", "overrides", "root", "code", "sub_code", "signed"),
    [
        (PRECREATE, APP_KEY, {"sign": None}, "alipay_trade_precreate_response", "40001", "isv.missing-signature",
         True),
        (PRECREATE, OTHER_KEY, {}, "alipay_trade_precreate_response", "40002", "isv.invalid-signature", True),
        (PRECREATE, APP_KEY, {"sign": "AAAA"}, "alipay_trade_precreate_response", "40002", "isv.invalid-signature",
         True),
        (PRECREATE, APP_KEY, {"app_id": "2021999999999999"}, "alipay_trade_precreate_response", "40002",
         "isv.invalid-app-id", False),
        (PRECREATE, APP_KEY, {"app_id": None}, "alipay_trade_precreate_response", "40001", "isv.missing-app-id",
         False),
        ("alipay.trade.nope", APP_KEY, {}, "error_response", "40002", "isv.invalid-method", True),
        (PRECREATE, APP_KEY, {"method": None}, "error_response", "40001", "isv.missing-method", True),
        (PRECREATE, APP_KEY, {"sign_type": "RSA"}, "alipay_trade_precreate_response", "40002",
         "isv.invalid-signature-type", True),
        (PRECREATE, APP_KEY, {"timestamp": "yesterday"}, "alipay_trade_precreate_response", "40002",
         "isv.invalid-timestamp", True),
        (PRECREATE, APP_KEY, {"version": None}, "alipay_trade_precreate_response", "40001", "isv.missing-version",
         True),
    ],
)
async def test_gateway_errors(env: Env, method: str, key: str, overrides: dict[str, str | None], root: str,
                              code: str, sub_code: str, signed: bool) -> None:
    biz = {"out_trade_no": "E1", "total_amount": "1.00", "subject": "E1"}
    reply = await env.post(method, biz, key, **overrides)
    body = reply.json()
    assert list(body) == ([root, "sign"] if signed else [root])
    assert (body[root]["code"], body[root]["sub_code"]) == (code, sub_code)
    assert body[root]["msg"] == {"40001": "Missing Required Arguments", "40002": "Invalid Arguments"}[code]
    assert verify_response(reply.text, method, PLATFORM_PUB) is signed
    assert env.gw.ground_truth() == []


async def test_sdk_sees_invalid_signature_and_unknown_app(env: Env) -> None:
    wrong = await env.call(env.sdk(app_key=OTHER_KEY).api_alipay_trade_query, out_trade_no="X")
    assert (wrong["code"], wrong["sub_code"]) == ("40002", "isv.invalid-signature")
    assert wrong["sub_msg"].endswith("&version=1.0")  # the gateway shows the string it verified
    env.gw.add_channel("ali2", app_id="2021000000000002", app_public_key=public_key_pem(APP_KEY))
    with pytest.raises(AliPayException) as raised:  # unsigned reply: the SDK refuses it
        await env.call(env.sdk(channel="ali2").api_alipay_trade_query, out_trade_no="X")
    assert "isv.invalid-app-id" in str(raised.value)


# ---- fault knobs --------------------------------------------------------------------------------------


async def test_error_hang_bad_json(env: Env) -> None:
    faults = env.sim.faults("ali")
    faults.update(error_rate=1.0)
    reply = await env.post(PRECREATE, {})
    assert (reply.status_code, reply.content) == (500, b"")
    faults.update(error_rate=0.0, bad_json_rate=1.0)
    reply = await env.post(PRECREATE, {})
    assert reply.status_code == 200 and reply.text.startswith("<!DOCTYPE html>")
    faults.update(bad_json_rate=0.0, hang_rate=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # the gateway hangs (for an hour): only the client's timeout ends it
        await env.client.post(env.url, data={"method": PRECREATE}, timeout=0.3)
    assert time.monotonic() - started >= 0.3


async def test_maintenance_reply_is_signed_under_the_method_node(env: Env) -> None:
    env.sim.faults("ali").update(maintenance_rate=1.0)
    reply = await env.post("alipay.trade.query", {"out_trade_no": "M1"})  # method only in the POSTed form
    assert node(reply, "alipay.trade.query") == {
        "code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}
    assert verify_response(reply.text, "alipay.trade.query", PLATFORM_PUB)
    via_sdk = await env.call(env.sdk().api_alipay_trade_query, out_trade_no="M1")
    assert (via_sdk["code"], via_sdk["sub_code"]) == ("20000", "isp.unknow-error")


async def test_bad_signature_rate_breaks_replies_and_notifies(env: Env) -> None:
    env.sim.faults("ali").update(bad_signature_rate=1.0)
    with pytest.raises(AliPayValidationError):
        await env.call(env.sdk().api_alipay_trade_precreate, subject="B1", out_trade_no="B1", total_amount=1)
    reply = await env.post("alipay.trade.query", {"out_trade_no": "B1"})
    assert node(reply, "alipay.trade.query")["trade_status"] == "WAIT_BUYER_PAY"
    assert not verify_response(reply.text, "alipay.trade.query", PLATFORM_PUB)
    assert env.gw.buyer_visits("ali", "B1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    notify = dict(env.receiver.hits[0])
    assert not verify_rsa2(notify, notify["sign"], PLATFORM_PUB, notify=True)
    assert env.sdk().verify(notify, notify.pop("sign")) is False


async def test_pay_probability_zero_leaves_orders_unpaid(env: Env) -> None:
    env.sim.faults("ali").update(pay_probability=0.0)
    for ref in ("U1", "U2"):
        await env.post(PRECREATE, {"out_trade_no": ref, "total_amount": "1.00", "subject": ref})
        assert env.gw.buyer_visits("ali", ref) is False
    assert [t.paid for t in env.gw.ground_truth()] == [False, False]
    assert node(await env.post("alipay.trade.query", {"out_trade_no": "U1"}), "alipay.trade.query")[
        "trade_status"] == "WAIT_BUYER_PAY"
    assert env.gw.pending_notifies == 0 and env.receiver.hits == []
    with pytest.raises(KeyError):
        env.gw.buyer_visits("ali", "NEVER")


async def test_callback_drop_and_duplicate(env: Env) -> None:
    faults = env.sim.faults("ali")
    faults.update(callback_drop_rate=1.0)
    await env.post(PRECREATE, {"out_trade_no": "L1", "total_amount": "1.00", "subject": "L1"})
    assert env.gw.buyer_visits("ali", "L1")
    faults.update(callback_drop_rate=0.0, duplicate_callback_rate=1.0)
    await env.post(PRECREATE, {"out_trade_no": "L2", "total_amount": "1.00", "subject": "L2"})
    assert env.gw.buyer_visits("ali", "L2")
    assert await env.gw.wait_notifies(PATIENCE_S)
    lost, twice = env.gw.ground_truth()
    assert (lost.paid, lost.callback_dropped, lost.callback_sent, lost.attempts) == (True, True, False, ())
    assert [h["out_trade_no"] for h in env.receiver.hits] == ["L2", "L2"]
    assert [a.acknowledged for a in twice.attempts] == [True, True]
    paid = node(await env.post("alipay.trade.query", {"out_trade_no": "L1"}), "alipay.trade.query")
    assert paid["trade_status"] == "TRADE_SUCCESS"  # the 掉单 a reconciler must find


@pytest.mark.parametrize("body", ["fail", "success\n", "SUCCESS"])
async def test_unacked_notify_is_retried_on_schedule_then_given_up(env: Env, body: str) -> None:
    env.receiver.body = body
    await env.post(PRECREATE, {"out_trade_no": "N1", "total_amount": "1.00", "subject": "N1"})
    env.gw.buyer_visits("ali", "N1")
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert len(env.receiver.hits) == 3  # first try + the two retries of notify_retry_delays
    gaps = [b - a for a, b in zip(env.receiver.times, env.receiver.times[1:], strict=False)]
    assert all(gap >= 0.045 for gap in gaps)
    assert len({h["notify_id"] for h in env.receiver.hits}) == 1
    (truth,) = env.gw.ground_truth()
    assert truth.callback_sent and not truth.callback_acknowledged
    assert [a.status_code for a in truth.attempts] == [200, 200, 200]


async def test_defaults_generated_platform_key_and_bare_base64_app_key() -> None:
    gw = AlipayGateway(rng=random.Random(1))
    assert gw.notify_retry_delays == DEFAULT_NOTIFY_RETRY_DELAYS == (240, 600, 600, 3600, 7200, 21600, 54000)
    async with SimServer() as sim, httpx.AsyncClient(trust_env=False) as client:
        sim.add_gateway(gw)
        gw.add_channel("a", app_id=APP_ID, app_public_key=strip_pem(public_key_pem(APP_KEY)))
        gw.add_channel("b", app_id=APP_ID, app_public_key=public_key_pem(APP_KEY))
        assert gw.platform_public_key_pem("a") == gw.platform_public_key_pem("b") != PLATFORM_PUB
        alipay = LoopbackAliPay(sim.endpoint("a") + "gateway.do", appid=APP_ID, app_private_key_string=APP_KEY,
                                alipay_public_key_string=gw.platform_public_key_pem("a"))
        created = await asyncio.to_thread(alipay.api_alipay_trade_precreate, subject="G", out_trade_no="G",
                                          total_amount=5)
        assert created["code"] == "10000"
        assert (await client.get(f"{sim.base_url}/nowhere/gateway.do")).status_code == 404
        assert "PRIVATE" not in repr(gw.channel("a"))
    with pytest.raises(ValueError):
        gw.add_channel("a", app_id=APP_ID, app_public_key=public_key_pem(APP_KEY))
    with pytest.raises(ValueError):
        gw.add_channel("c", app_id=APP_ID, app_public_key="not a key")
