"""The epusdt gateway simulator over real HTTP on loopback: orders, status, errors, fault knobs, callbacks."""

from __future__ import annotations

import json
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
from monitor.protocols.epusdt import POWERED_BY, sign, verify
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.epusdt import EpusdtGateway
from tests.conftest import PATIENCE_S

TOKEN = "epusdt_password_xasddawqe"
START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)  # 11:12:00 in Beijing
DELAYS = (0.05, 0.1)


@dataclass
class Receiver:
    """A shop callback endpoint: records each callback (body, headers, monotonic time) and answers ``body``."""

    body: str = "ok"
    status: int = 200
    hits: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.hits.append(((await request.body()).decode(), dict(request.headers), time.monotonic()))
        return Response(self.body, status_code=self.status, media_type="text/plain")


@dataclass
class Env:
    sim: SimServer
    gw: EpusdtGateway
    clock: FixedClock
    client: httpx.AsyncClient
    receiver: Receiver
    notify_url: str

    async def post(self, body: dict[str, Any], *, token: str = TOKEN, channel: str = "usdt") -> dict[str, Any]:
        signed = {**body, "signature": sign(body, token)}
        reply = await self.client.post(self.sim.endpoint(channel) + "api/v1/order/create-transaction", json=signed)
        assert reply.status_code == 200
        result: dict[str, Any] = reply.json()
        return result

    async def create(self, order_id: str = "ABCD1234EFGH5678", amount: float = 10.0, **extra: Any) -> dict[str, Any]:
        return await self.post({"order_id": order_id, "amount": amount, "notify_url": self.notify_url,
                                "redirect_url": "http://shop.invalid/return", **extra})

    async def status(self, trade_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self.client.get(self.sim.endpoint("usdt") + f"pay/check-status/{trade_id}")
        ).json()
        return result

    def faults(self) -> Faults:
        return self.gw.faults("usdt")


async def _env(**options: Any) -> AsyncIterator[Env]:
    receiver = Receiver()
    clock = FixedClock(START)
    async with (
        AppServer(Starlette(routes=[Route("/notify", receiver.handle, methods=["POST"])])) as shop,
        SimServer() as sim,
        httpx.AsyncClient(timeout=5.0, trust_env=False) as client,
    ):
        gw = EpusdtGateway(rng=random.Random(1), clock=clock, **options)
        sim.add_gateway(gw)
        gw.add_channel("usdt", token=TOKEN, faults=Faults(pay_probability=1.0, callback_delay_s=0.0))
        yield Env(sim, gw, clock, client, receiver, f"{shop.base_url}/notify")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for e in _env():
        yield e


# ---- the happy path ----------------------------------------------------------------------------------


async def test_create_check_pay_callback_ack(env: Env) -> None:
    reply = await env.client.post(
        env.sim.endpoint("usdt") + "api/v1/order/create-transaction",
        content=json.dumps({"order_id": "ABCD1234EFGH5678", "amount": 10.0, "notify_url": env.notify_url,
                            "signature": sign({"order_id": "ABCD1234EFGH5678", "amount": 10,
                                               "notify_url": env.notify_url}, TOKEN)}),
        headers={"Content-Type": "application/json", "X-Request-ID": "req-1"},
    )
    assert reply.status_code == 200 and reply.text.endswith("}\n")
    assert reply.headers["content-type"] == "application/json; charset=UTF-8"
    assert '"amount":10,"actual_amount":1.5625,' in reply.text  # Go's float64 printing
    body = reply.json()
    assert (body["status_code"], body["message"], body["request_id"]) == (200, "success", "req-1")
    data = body["data"]
    trade_id = data["trade_id"]
    assert re.fullmatch(r"20261126" + str(int(START.timestamp() * 1000)) + r"\d{3}", trade_id)
    assert (data["order_id"], data["amount"], data["actual_amount"]) == ("ABCD1234EFGH5678", 10, 1.5625)
    assert re.fullmatch(r"T[1-9A-HJ-NP-Za-km-z]{33}", data["token"])
    assert data["expiration_time"] == int(START.timestamp()) + 600
    assert data["payment_url"] == f"{env.sim.base_url}/usdt/pay/checkout-counter/{trade_id}"
    page = await env.client.get(data["payment_url"])
    assert "1.5625" in page.text and data["token"] in page.text

    assert (await env.status(trade_id))["data"] == {"trade_id": trade_id, "status": 1}
    assert env.gw.buyer_visits("usdt", trade_id) is True
    assert await env.gw.wait_notifies(PATIENCE_S)
    ((raw, headers, _),) = env.receiver.hits
    assert headers["powered-by"] == POWERED_BY
    assert headers["content-type"] == "application/json"
    callback = json.loads(raw)
    assert list(callback) == ["trade_id", "order_id", "amount", "actual_amount", "token", "block_transaction_id",
                              "signature", "status"]
    assert verify(callback, TOKEN)
    assert (callback["trade_id"], callback["order_id"], callback["amount"], callback["actual_amount"]) == (
        trade_id, "ABCD1234EFGH5678", 10, 1.5625)
    assert (callback["token"], callback["status"]) == (data["token"], 2)
    assert re.fullmatch(r"[0-9a-f]{64}", callback["block_transaction_id"])
    assert (await env.status(trade_id))["data"]["status"] == 2

    (truth,) = env.gw.ground_truth()
    assert (truth.channel, truth.trade_no, truth.out_trade_no, truth.money) == (
        "usdt", trade_id, "ABCD1234EFGH5678", Decimal("10.0"))
    assert truth.paid and truth.paid_at == START and truth.callback_acknowledged
    assert env.gw.buyer_visits("usdt", "ABCD1234EFGH5678") is False  # by order_id; already paid


async def test_same_amount_gets_the_next_free_usdt_amount_and_orders_expire(env: Env) -> None:
    first = (await env.create("A1"))["data"]
    second = (await env.create("A2"))["data"]
    assert (first["actual_amount"], second["actual_amount"]) == (1.5625, 1.5626)
    env.clock.advance(600)
    assert (await env.status(first["trade_id"]))["data"]["status"] == 3
    assert env.gw.buyer_visits("usdt", first["trade_id"]) is False
    third = (await env.create("A3"))["data"]
    assert third["actual_amount"] == 1.5625  # the expired orders no longer hold their amounts
    assert [t.paid for t in env.gw.ground_truth()] == [False, False, False]


# ---- protocol errors -------------------------------------------------------------------------------


async def test_errors(env: Env) -> None:
    url = env.sim.endpoint("usdt") + "api/v1/order/create-transaction"
    good = {"order_id": "E1", "amount": 10, "notify_url": env.notify_url}
    assert (await env.create("DUP"))["status_code"] == 200
    cases: list[tuple[dict[str, Any], int, str]] = [
        (await env.post(good, token="wrong"), 401, "签名认证错误"),
        ((await env.client.post(url, json=good)).json(), 401, "签名认证错误"),
        ((await env.client.post(url, content=b"order_id=E1&amount=10")).json(), 401, "签名认证错误"),
        ((await env.client.post(url, json={**good, "flag": True, "signature": sign(good, TOKEN)})).json(), 401,
         "签名认证错误"),  # Go's signer cannot print a bool
        (await env.create("DUP"), 10002, "支付交易已存在，请勿重复创建"),
        (await env.post({**good, "amount": "10"}), 10009, "无法解析请求参数"),
        (await env.post({**good, "order_id": 12345}), 10009, "无法解析请求参数"),
        (await env.post({**good, "order_id": ""}), 400, "订单号 是必填项"),
        (await env.post({**good, "order_id": "X" * 33}), 400, "订单号 的最大长度是 32"),
        (await env.post({**good, "amount": 0.01}), 400, "支付金额 value should be greater than 0.01"),
        (await env.post({**good, "notify_url": "not a url"}), 400, "异步回调网址 值必须是一个完整、有效的URL地址"),
        (await env.status("nope"), 10008, "订单不存在"),
    ]
    for body, code, message in cases:
        assert (body["status_code"], body["message"], body["data"]) == (code, message, None)
        assert isinstance(body["request_id"], str) and body["request_id"]
    assert [t.out_trade_no for t in env.gw.ground_truth()] == ["DUP"]
    assert (await env.client.get(url)).status_code == 405
    assert (await env.client.get(env.sim.endpoint("nope") + "pay/check-status/1")).status_code == 404


# ---- fault knobs over the wire ---------------------------------------------------------------------


async def test_error_hang_bad_body_and_maintenance(env: Env) -> None:
    check = env.sim.endpoint("usdt") + "pay/check-status/1"
    env.faults().update(error_rate=1.0)
    reply = await env.client.get(check)
    assert (reply.status_code, reply.content) == (500, b"")

    env.faults().update(error_rate=0.0, hang_rate=1.0)
    with pytest.raises(httpx.TimeoutException):
        await env.client.get(check, timeout=0.3)

    env.faults().update(hang_rate=0.0, bad_json_rate=1.0)
    reply = await env.client.get(check)
    assert reply.status_code == 200 and reply.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        reply.json()

    env.faults().update(bad_json_rate=0.0, maintenance_rate=1.0)
    busy = await env.create("M1")
    assert (busy["status_code"], busy["message"], busy["data"]) == (400, "系统错误", None)
    assert env.gw.ground_truth() == []


async def test_bad_signature_on_callbacks(env: Env) -> None:
    env.faults().update(bad_signature_rate=1.0)
    trade_id = (await env.create("BADSIG1"))["data"]["trade_id"]
    env.gw.buyer_visits("usdt", trade_id)
    assert await env.gw.wait_notifies(PATIENCE_S)
    ((raw, _, _),) = env.receiver.hits
    callback = json.loads(raw)
    assert callback["order_id"] == "BADSIG1" and len(callback["signature"]) == 32
    assert not verify(callback, TOKEN)


async def test_pay_probability_zero_leaves_orders_unpaid(env: Env) -> None:
    env.faults().update(pay_probability=0.0)
    trade_id = (await env.create("NOPAY1"))["data"]["trade_id"]
    assert [env.gw.buyer_visits("usdt", trade_id) for _ in range(5)] == [False] * 5
    assert (await env.status(trade_id))["data"]["status"] == 1
    (truth,) = env.gw.ground_truth()
    assert not truth.paid and not truth.callback_sent


async def test_dropped_callback_is_paid_without_callback(env: Env) -> None:
    env.faults().update(callback_drop_rate=1.0)
    trade_id = (await env.create("DROP1"))["data"]["trade_id"]
    assert env.gw.buyer_visits("usdt", trade_id)
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert env.receiver.hits == []
    assert (await env.status(trade_id))["data"]["status"] == 2
    (truth,) = env.gw.ground_truth()
    assert truth.paid and truth.callback_dropped and not truth.callback_sent


async def test_duplicate_callback_sends_two(env: Env) -> None:
    env.faults().update(duplicate_callback_rate=1.0)
    trade_id = (await env.create("DUP1"))["data"]["trade_id"]
    env.gw.buyer_visits("usdt", trade_id)
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert [json.loads(raw)["trade_id"] for raw, _, _ in env.receiver.hits] == [trade_id, trade_id]


async def test_default_is_a_single_attempt_and_only_exact_ok_acks(env: Env) -> None:
    env.receiver.body = "ok\n"
    trade_id = (await env.create("ONCE1"))["data"]["trade_id"]
    env.gw.buyer_visits("usdt", trade_id)
    assert await env.gw.wait_notifies(PATIENCE_S)
    assert len(env.receiver.hits) == 1
    (truth,) = env.gw.ground_truth()
    assert [(a.status_code, a.acknowledged) for a in truth.attempts] == [(200, False)]


async def test_ok_acks_whatever_the_http_status(env: Env) -> None:
    env.receiver.status = 500  # epusdt reads only the body
    trade_id = (await env.create("OK500"))["data"]["trade_id"]
    env.gw.buyer_visits("usdt", trade_id)
    assert await env.gw.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert [(a.status_code, a.acknowledged) for a in truth.attempts] == [(500, True)]


async def test_retries_follow_the_schedule_then_give_up() -> None:
    async for env in _env(notify_max_retry=2, notify_retry_delays=DELAYS):
        env.receiver.body = "fail"
        trade_id = (await env.create("RETRY1"))["data"]["trade_id"]
        env.gw.buyer_visits("usdt", trade_id)
        assert await env.gw.wait_notifies(PATIENCE_S)
        times = [at for _, _, at in env.receiver.hits]
        assert len(times) == 3
        assert times[1] - times[0] >= DELAYS[0] - 0.01
        assert times[2] - times[1] >= DELAYS[1] - 0.01
        (truth,) = env.gw.ground_truth()
        assert truth.paid and truth.callback_sent and not truth.callback_acknowledged and len(truth.attempts) == 3


def test_options_channels_and_repr_hides_the_token() -> None:
    assert EpusdtGateway(notify_max_retry=3).notify_retry_delays == (15.0, 16.0, 31.0)
    assert EpusdtGateway(notify_max_retry=3, notify_retry_delays=[1, 2]).notify_retry_delays == (1, 2, 2)
    with pytest.raises(ValueError):
        EpusdtGateway(usdt_rate="0")
    gw = EpusdtGateway(usdt_rate="7.2")
    channel = gw.add_channel("usdt", token=TOKEN)
    assert TOKEN not in repr(channel)
    with pytest.raises(ValueError):
        gw.add_channel("usdt", token=TOKEN)
    with pytest.raises(ValueError):
        gw.add_channel("other", token="")
    with pytest.raises(KeyError):
        gw.buyer_visits("usdt", "nope")
