"""The epay V2 (RSA) gateway simulator over real HTTP: signed requests and replies, the timestamp window, error
codes, notifies and fault knobs. Request signatures are made and reply signatures checked here with
``cryptography`` over strings written out by hand, independently of ``monitor.protocols.epay_v2``."""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.protocols.epay import sign_md5
from monitor.protocols.epay_v2 import base64_from_pem, private_key_pem, public_key_pem, verify_rsa
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.epay_v2 import EpayV2Gateway
from tests.conftest import PATIENCE_S

START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)  # 11:12:00 in Beijing
NOW = int(START.timestamp())
MD5_KEY = "v2-md5-key-000000000000000000001"
RETRIES = (0.02, 0.02, 0.02, 0.02)


@functools.cache
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def platform_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def content(params: dict[str, Any]) -> str:
    """epay's string to sign, by hand: sorted, non-empty scalars, without sign/sign_type."""
    items = sorted(
        (k, str(v)) for k, v in params.items()
        if k not in ("sign", "sign_type") and v is not None and not isinstance(v, list | dict) and str(v).strip()
    )
    return "&".join(f"{k}={v}" for k, v in items)


def rsa_signed(params: dict[str, str], key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    signature = (key or merchant_key()).sign(content(params).encode(), padding.PKCS1v15(), hashes.SHA256())
    return {**params, "sign": base64.b64encode(signature).decode(), "sign_type": "RSA"}


def platform_verifies(body: dict[str, Any]) -> bool:
    try:
        platform_key().public_key().verify(base64.b64decode(body["sign"]), content(body).encode(),
                                           padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass
class Receiver:
    body: str = "success"
    hits: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.hits.append(dict(request.query_params))
        return PlainTextResponse(self.body)


@dataclass
class Env:
    sim: SimServer
    gw: EpayV2Gateway
    clock: FixedClock
    client: httpx.AsyncClient
    receiver: Receiver
    notify_url: str

    async def call(self, path: str, params: dict[str, str], channel: str = "v2") -> httpx.Response:
        return await self.client.post(self.sim.endpoint(channel) + path, data=params)

    async def create(self, out_trade_no: str, **extra: str) -> httpx.Response:
        params = {"pid": "1001", "type": "alipay", "out_trade_no": out_trade_no, "notify_url": self.notify_url,
                  "return_url": "http://127.0.0.1:9/return", "name": "VIP会员", "money": "10.00",
                  "clientip": "127.0.0.1", "method": "web", "timestamp": str(NOW), **extra}
        return await self.call("api/pay/create", rsa_signed(params))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FixedClock(START)
    gw = EpayV2Gateway(rng=random.Random(3), clock=clock, notify_retry_delays=RETRIES)
    receiver = Receiver()
    async with (SimServer() as sim, AppServer(Starlette(routes=[Route("/notify", receiver.handle)])) as shop,
                httpx.AsyncClient(timeout=5.0, trust_env=False) as client):
        sim.add_gateway(gw)
        gw.add_channel("v2", pid=1001, merchant_public_key=base64_from_pem(public_key_pem(merchant_key())),
                       platform_private_key=base64_from_pem(private_key_pem(platform_key())),
                       faults=Faults(pay_probability=1.0, callback_delay_s=0.0))
        yield Env(sim, gw, clock, client, receiver, f"{shop.base_url}/notify")


def query(**extra: str) -> dict[str, str]:
    return rsa_signed({"pid": "1001", "timestamp": str(NOW), **extra})


async def test_create_query_pay_notify(env: Env) -> None:
    created = await env.create("V2ORDER1")
    assert created.headers["content-type"] == "text/html; charset=UTF-8"  # Payment::echoJson
    body = created.json()
    trade_no = body["trade_no"]
    assert body == {"code": 0, "trade_no": trade_no, "pay_type": "jump",
                    "pay_info": f"http://127.0.0.1:{env.sim.port}/v2/pay/submit/{trade_no}/",
                    "timestamp": str(NOW), "sign_type": "RSA", "sign": body["sign"]}
    assert "\\/" in created.text and platform_verifies(body)
    assert content(body).startswith("code=0&")  # code=0 is signed

    unpaid = await env.call("api/pay/query", query(trade_no=trade_no))
    assert unpaid.headers["content-type"] == "application/json; charset=UTF-8"
    row = unpaid.json()
    assert platform_verifies(row)
    assert (row["code"], row["out_trade_no"], row["money"], row["status"], row["name"]) == (
        0, "V2ORDER1", "10.00", 0, "VIP会员")
    assert {"endtime", "buyer", "api_trade_no", "param"}.isdisjoint(row)  # empty fields are dropped
    assert "VIP会员" in unpaid.text  # JSON_UNESCAPED_UNICODE

    assert env.gw.buyer_visits("v2", trade_no)
    assert await env.gw.wait_notifies(PATIENCE_S)
    (notify,) = env.receiver.hits
    assert (notify["trade_no"], notify["money"], notify["trade_status"], notify["sign_type"]) == (
        trade_no, "10", "TRADE_SUCCESS", "RSA")
    assert notify["timestamp"] == str(NOW) and "buyer" in notify
    assert platform_verifies(notify)
    assert verify_rsa(notify, notify["sign"], env.gw.platform_public_key_pem("v2"))
    (truth,) = env.gw.ground_truth()
    assert (truth.paid, truth.callback_sent, truth.callback_acknowledged) == (True, True, True)

    paid = (await env.call("api/pay/query", query(out_trade_no="V2ORDER1"))).json()
    assert (paid["status"], paid["endtime"], paid["trade_no"]) == (1, "2026-11-26 11:12:00", trade_no)
    assert platform_verifies(paid)


async def test_merchant_info_and_orders(env: Env) -> None:
    trade_nos = [(await env.create(f"INFO{i}", money=money)).json()["trade_no"]
                 for i, money in enumerate(("10.00", "15.50", "3"))]
    for trade_no in trade_nos[:2]:
        env.gw.buyer_visits("v2", trade_no)
    assert await env.gw.wait_notifies(PATIENCE_S)
    info = (await env.call("api/merchant/info", query())).json()
    assert platform_verifies(info)
    assert {k: v for k, v in info.items() if k not in ("sign", "timestamp", "sign_type")} == {
        "code": 0, "pid": 1001, "status": 1, "pay_status": 1, "settle_status": 1, "money": "25.50",
        "order_num": 3, "order_num_today": 2, "order_num_lastday": 0, "order_money_today": "25.5",
        "order_money_lastday": "0",
    }  # no settle_type / settle_account / settle_name

    orders = (await env.call("api/merchant/orders", query(limit="2"))).json()
    assert [r["trade_no"] for r in orders["data"]] == sorted(trade_nos, reverse=True)[:2]
    assert content(orders) == f"code=0&timestamp={NOW}"  # the list itself is not signed
    assert platform_verifies(orders)
    assert orders["data"][0]["refundmoney"] is None and "clientip" in orders["data"][0]
    broken = (await env.call("api/merchant/orders", query(status="1"))).json()
    assert [r["status"] for r in broken["data"]] == [0]  # any posted status filters on 0


ERRORS = [  # (path, params, code, msg)
    ("api/pay/query", rsa_signed({"pid": "9", "timestamp": str(NOW)}), -1, "商户不存在！"),
    ("api/pay/query", rsa_signed({"pid": "0", "timestamp": str(NOW)}), -1, "商户ID不能为空"),
    ("api/pay/query", {}, -4, "未传入任何参数"),
    ("api/pay/query", rsa_signed({"pid": "1001", "timestamp": str(NOW + 301)}), -3,
     "时间戳字段不正确，请检查服务器时间"),
    ("api/pay/query", rsa_signed({"pid": "1001", "timestamp": str(NOW - 301)}), -3,
     "时间戳字段不正确，请检查服务器时间"),
    ("api/pay/query", rsa_signed({"pid": "1001"}), -3, "时间戳(timestamp)字段不能为空"),
    ("api/pay/query", {**query(), "sign": base64.b64encode(b"x" * 256).decode()}, -3, "RSA签名校验失败"),
    ("api/pay/query", rsa_signed({"pid": "1001", "timestamp": str(NOW)}, platform_key()), -3, "RSA签名校验失败"),
    ("api/pay/query", {"pid": "1001", "timestamp": str(NOW), "sign": "x", "sign_type": "MD5"}, -3,
     "该商户只能使用RSA签名类型"),
    ("api/pay/query", {"pid": "1001", "timestamp": str(NOW), "sign_type": "RSA"}, -3, "缺少签名参数"),
    ("api/pay/query", query(), -1, "订单号不能为空"),
    ("api/pay/query", query(trade_no="1"), -1, "订单号不存在"),
    ("api/pay/create", rsa_signed({"pid": "1001", "timestamp": str(NOW), "money": "1"}), -1,
     "订单号(out_trade_no)不能为空"),
    ("api/pay/nothing", query(), -5, "接口方法不存在"),
    ("api/pay", query(), -5, "URL Error!"),
]


async def test_errors_are_unsigned_json(env: Env) -> None:
    # One server for the whole table: each server stop costs uvicorn's 0.1 s shutdown sleep.
    for path, params, code, msg in ERRORS:
        reply = await env.call(path, params)
        assert reply.status_code == 200, msg
        assert reply.headers["content-type"] == "application/json; charset=UTF-8", msg
        assert reply.json() == {"code": code, "msg": msg}, (path, params)


async def test_timestamp_at_the_window_edge_is_accepted(env: Env) -> None:
    for ts in (NOW + 300, NOW - 300):
        assert (await env.call("api/merchant/info", query(timestamp=str(ts)))).json()["code"] == 0
    env.clock.advance(301)  # the gateway clock decides
    assert (await env.call("api/merchant/info", query())).json()["code"] == -3


async def test_md5_merchant_and_a_generated_platform_key(env: Env) -> None:
    channel = env.gw.add_channel("v2md5", pid=1001, merchant_public_key=public_key_pem(merchant_key()),
                                 allow_md5=True, key=MD5_KEY)
    again = env.gw.add_channel("v2md5b", pid=1001, merchant_public_key=public_key_pem(merchant_key()))
    assert channel.platform_private_key == again.platform_private_key  # one generated key per gateway
    params = {"pid": "1001", "timestamp": str(NOW)}
    for signed in ({**params, "sign": sign_md5(params, MD5_KEY), "sign_type": "MD5"},
                   {**params, "sign": sign_md5(params, MD5_KEY)}, rsa_signed(params)):
        body = (await env.call("api/merchant/info", signed, "v2md5")).json()
        assert body["code"] == 0
        assert verify_rsa(body, body["sign"], env.gw.platform_public_key_pem("v2md5"))  # replies are always RSA
    bad = {**params, "sign": "0" * 32, "sign_type": "MD5"}
    assert (await env.call("api/merchant/info", bad, "v2md5")).json() == {"code": -3, "msg": "MD5签名校验失败"}
    with pytest.raises(ValueError):
        env.gw.add_channel("v2md5c", pid=1, merchant_public_key=public_key_pem(merchant_key()), allow_md5=True)


# ---- faults -------------------------------------------------------------------------------------------


async def test_request_faults(env: Env) -> None:
    faults = env.sim.faults("v2")
    faults.update(error_rate=1.0)
    assert ((reply := await env.call("api/merchant/info", query())).status_code, reply.content) == (500, b"")
    faults.update(error_rate=0.0, bad_json_rate=1.0)
    reply = await env.call("api/merchant/info", query())
    with pytest.raises(ValueError):
        reply.json()
    faults.update(bad_json_rate=0.0, maintenance_rate=1.0)
    reply = await env.call("api/pay/create", query())
    assert (reply.json(), reply.headers["content-type"]) == (
        {"code": -1, "msg": "系统维护中"}, "application/json; charset=UTF-8")
    faults.update(maintenance_rate=0.0, bad_signature_rate=1.0)
    info = (await env.call("api/merchant/info", query())).json()
    assert info["code"] == 0 and not platform_verifies(info)
    faults.update(bad_signature_rate=0.0, hang_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):  # the gateway hangs (for an hour): only the client's timeout ends it
        await env.client.post(env.sim.endpoint("v2") + "api/merchant/info", data=query(), timeout=0.3)


async def test_buyer_and_callback_faults(env: Env) -> None:
    faults = env.sim.faults("v2")
    orders = [(await env.create(f"CB{i}")).json()["trade_no"] for i in range(4)]
    faults.update(pay_probability=0.0)
    assert env.gw.buyer_visits("v2", orders[0]) is False
    faults.update(pay_probability=1.0, callback_drop_rate=1.0)
    assert env.gw.buyer_visits("v2", orders[1])
    faults.update(callback_drop_rate=0.0, duplicate_callback_rate=1.0)
    env.gw.buyer_visits("v2", orders[2])
    assert await env.gw.wait_notifies(PATIENCE_S)
    faults.update(duplicate_callback_rate=0.0, bad_signature_rate=1.0)
    env.gw.buyer_visits("v2", orders[3])
    assert await env.gw.wait_notifies(PATIENCE_S)

    unpaid, dropped, duplicated, badly_signed = env.gw.ground_truth()
    assert (unpaid.paid, unpaid.callback_sent) == (False, False)
    assert (dropped.paid, dropped.callback_dropped, dropped.callback_sent) == (True, True, False)
    assert [a.acknowledged for a in duplicated.attempts] == [True, True]
    assert [h["trade_no"] for h in env.receiver.hits[:2]] == [orders[2], orders[2]]
    assert not platform_verifies(env.receiver.hits[2])
    assert badly_signed.callback_acknowledged  # this receiver does not check signatures


async def test_unacknowledged_notify_is_retried_then_given_up(env: Env) -> None:
    env.receiver.body = "fail"
    env.gw.buyer_visits("v2", (await env.create("RETRY")).json()["trade_no"])
    assert await env.gw.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert len(env.receiver.hits) == len(truth.attempts) == 5
    assert not truth.callback_acknowledged
    assert all(platform_verifies(h) for h in env.receiver.hits)
