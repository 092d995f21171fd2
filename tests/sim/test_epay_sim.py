"""The epay V1 gateway simulator over real HTTP on loopback: replies, quirks, fault knobs, notifies."""

from __future__ import annotations

import asyncio
import math
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.protocols.epay import sign_md5, verify_md5
from monitor.sim import AppServer, EpayGateway, Faults, SimServer
from tests.conftest import PATIENCE_S, wait_until

KEY = "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"
OTHER_KEY = "Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx9Zx"
START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)  # 11:12:00 in Beijing


RETRIES = (0.02, 0.02, 0.02, 0.02)  # short stand-ins for cron.php's 1, 2, 16 and 36 minutes


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    gateway = EpayGateway(rng=random.Random(7), clock=FixedClock(START), notify_retry_delays=RETRIES)
    async with SimServer(gateway) as server:
        server.add_channel("main", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0))
        server.add_channel("spare", 2002, OTHER_KEY)
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as c:
        yield c


@dataclass
class Receiver:
    """A merchant notify endpoint that records what it gets and answers ``body`` with ``status``."""

    body: str = "success"
    status: int = 200
    redirect: bool = False
    #: Answer ``fail`` to this many notifies first.
    fail_first: int = 0
    #: Answer ``fail`` when the MD5 signature does not verify with this key (what a shop does).
    check_key: str | None = None
    hits: list[tuple[list[tuple[str, str]], dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.hits.append((list(request.query_params.multi_items()), dict(request.headers)))
        if self.redirect:
            return RedirectResponse("https://elsewhere.invalid/success", status_code=302)
        if len(self.hits) <= self.fail_first:
            return PlainTextResponse("fail")
        if self.check_key is not None and not verify_md5(dict(request.query_params), self.check_key):
            return PlainTextResponse("fail")
        return PlainTextResponse(self.body, status_code=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    async with AppServer(Starlette(routes=[Route("/notify", rec.handle)])) as srv:
        yield rec, f"{srv.base_url}/notify"


def signed(params: dict[str, str], key: str = KEY) -> dict[str, str]:
    return {**params, "sign": sign_md5(params, key), "sign_type": "MD5"}


def order_params(out_trade_no: str = "ORDER0000000001", **extra: str) -> dict[str, str]:
    params = {
        "pid": "1001",
        "type": "alipay",
        "out_trade_no": out_trade_no,
        "notify_url": "http://127.0.0.1:9/notify",
        "return_url": "http://127.0.0.1:9/return",
        "name": out_trade_no,
        "money": "10",
        "clientip": "127.0.0.1",
    }
    params.update(extra)
    return params


async def mapi(
    client: httpx.AsyncClient, sim: SimServer, params: dict[str, str], channel: str = "main"
) -> httpx.Response:
    return await client.post(sim.endpoint(channel) + "mapi.php", data=params)


async def api(
    client: httpx.AsyncClient, sim: SimServer, channel: str = "main", **query: str
) -> httpx.Response:
    params = {"pid": "1001", "key": KEY, **query}
    return await client.get(sim.endpoint(channel) + "api.php", params=params)


async def create(client: httpx.AsyncClient, sim: SimServer, out_trade_no: str, **extra: str) -> str:
    reply = await mapi(client, sim, signed(order_params(out_trade_no, **extra)))
    body = reply.json()
    assert body["code"] == 1, body
    trade_no: str = body["trade_no"]
    return trade_no


# ---- mapi.php ---------------------------------------------------------------------------------------


async def test_mapi_creates_order_that_api_finds_unpaid_then_paid(
    sim: SimServer, client: httpx.AsyncClient
) -> None:
    reply = await mapi(client, sim, signed(order_params(money="10.00")))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=UTF-8"  # EP-new quirk
    body = reply.json()
    trade_no = body["trade_no"]
    assert re.fullmatch(r"20261126111200\d{5}", trade_no)
    assert body == {
        "code": 1,
        "trade_no": trade_no,
        "payurl": f"http://127.0.0.1:{sim.port}/main/pay/submit/{trade_no}/",
    }
    assert "\\/" in reply.text  # PHP escapes '/'

    for query in ({"out_trade_no": "ORDER0000000001"}, {"trade_no": trade_no}):
        found = await api(client, sim, act="order", **query)
        assert found.headers["content-type"] == "application/json; charset=UTF-8"  # EP-new api.php
        row = found.json()
        assert row["code"] == 1 and row["msg"] == "succ"
        assert (row["trade_no"], row["out_trade_no"], row["pid"], row["type"]) == (
            trade_no,
            "ORDER0000000001",
            1001,
            "alipay",
        )
        assert (row["money"], row["status"], row["addtime"], row["endtime"]) == (
            "10.00",
            0,
            "2026-11-26 11:12:00",
            None,
        )

    assert sim.gateway.buyer_visits("main", trade_no) is True
    paid = (await api(client, sim, act="order", trade_no=trade_no)).json()
    assert paid["status"] == 1
    assert paid["endtime"] == "2026-11-26 11:12:00"
    assert sim.gateway.buyer_visits("main", trade_no) is False  # already paid

    info = (await api(client, sim, act="query")).json()
    assert info == {
        "code": 1,
        "pid": 1001,
        "key": KEY,  # echoed in clear
        "active": 1,
        "money": "10.00",
        "type": 1,
        "account": "sim@example.com",
        "username": "模拟商户",
        "orders": 1,
        "orders_today": 1,
        "orders_lastday": 0,
    }


async def test_mapi_resubmission_reuses_trade_no_unless_params_changed_or_paid(
    sim: SimServer, client: httpx.AsyncClient
) -> None:
    first = await create(client, sim, "AGAIN01")
    assert await create(client, sim, "AGAIN01", type="wxpay") == first
    changed = (await mapi(client, sim, signed(order_params("AGAIN01", money="11")))).json()
    assert changed == {"code": -1, "msg": "该订单(AGAIN01)支付参数有变化，请更换订单号重新发起支付"}
    sim.gateway.buyer_visits("main", first)
    done = (await mapi(client, sim, signed(order_params("AGAIN01")))).json()
    assert done == {"code": -1, "msg": "该订单(AGAIN01)已完成支付，请勿重复发起支付"}


async def test_mapi_rejects_get_with_the_literal_body(sim: SimServer, client: httpx.AsyncClient) -> None:
    reply = await client.get(sim.endpoint("main") + "mapi.php", params=signed(order_params()))
    assert reply.text == '{"code":-4, "msg":"未传入任何参数"}'


MAPI_ERRORS = [  # (case, params, code, msg)
    ("bad-sign", {**signed(order_params()), "sign": "0" * 32}, -3, "MD5签名校验失败"),
    ("wrong-key", signed(order_params(), OTHER_KEY), -3, "MD5签名校验失败"),
    ("no-sign", order_params(), -3, "缺少签名参数"),
    ("money-text", signed(order_params(money="abc")), -1, "金额不合法"),
    ("money-negative", signed(order_params(money="-1")), -1, "金额不合法"),
    ("money-two-dots", signed(order_params(money="1.2.3")), -1, "金额不合法"),
    ("money-zero", signed(order_params(money="0")), -1, "金额(money)不能为空"),
    ("out-trade-no", signed(order_params("bad order")), -1, "订单号(out_trade_no)格式不正确"),
    ("unknown-pid", signed(order_params(pid="9999")), -1, "商户不存在！"),
    ("zero-pid", signed(order_params(pid="0")), -1, "商户ID不能为空"),
    ("no-clientip", signed(order_params(clientip="")), -1, "用户IP地址(clientip)不能为空"),
]


async def test_mapi_errors(sim: SimServer, client: httpx.AsyncClient) -> None:
    # One server for the whole table: each server stop costs uvicorn's 0.1 s shutdown sleep.
    for case, params, code, msg in MAPI_ERRORS:
        reply = await mapi(client, sim, params)
        assert reply.status_code == 200, case
        assert reply.headers["content-type"] == "application/json; charset=UTF-8", case
        assert msg in reply.text, case  # raw UTF-8 (JSON_UNESCAPED_UNICODE)
        assert reply.json() == {"code": code, "msg": msg}, case
    assert sim.gateway.ground_truth() == []


async def test_stored_name_is_escaped_like_php(sim: SimServer, client: httpx.AsyncClient) -> None:
    await create(client, sim, "NAME01", name='测试商品/1个 "A&B"')
    reply = await api(client, sim, act="order", out_trade_no="NAME01")
    assert reply.json()["name"] == "测试商品/1个 \\&quot;A&amp;B\\&quot;"  # htmlspecialchars(addslashes())
    assert "\\u6d4b\\u8bd5" in reply.text  # json_encode default: \uXXXX


# ---- api.php ----------------------------------------------------------------------------------------


API_ERRORS = [  # (case, query, expected)
    ("unknown-act", {"act": "nope"}, {"code": -5, "msg": "No Act!"}),
    ("no-act", {}, {"code": -5, "msg": "No Act!"}),
    ("bad-pid", {"act": "query", "pid": "9"}, {"code": -3, "msg": "商户ID不存在"}),
    ("pid-not-a-number", {"act": "query", "pid": "x"}, {"code": -3, "msg": "商户ID不存在"}),
    ("bad-key", {"act": "order", "key": "wrong"}, {"code": -3, "msg": "商户密钥错误"}),
    ("not-found", {"act": "order", "trade_no": "1"}, {"code": -1, "msg": "订单号不存在"}),
    ("no-out", {"act": "order", "out_trade_no": "X"}, {"code": -1, "msg": "订单号不存在"}),
    ("no-id", {"act": "order"}, {"code": -4, "msg": "订单号不能为空"}),
]


async def test_api_errors(sim: SimServer, client: httpx.AsyncClient) -> None:
    for case, query, expected in API_ERRORS:
        reply = await api(client, sim, **query)
        assert reply.status_code == 200, case
        assert reply.json() == expected, case
        assert reply.text.isascii(), case  # json_encode default escapes non-ASCII


async def test_orders_list_and_its_empty_500(sim: SimServer, client: httpx.AsyncClient) -> None:
    empty = await api(client, sim, act="orders")
    assert (empty.status_code, empty.content) == (500, b"")  # PHP 8 TypeError on an empty list

    trade_nos = [await create(client, sim, f"LIST{i:02d}") for i in range(52)]
    listed = (await api(client, sim, act="orders", limit="100")).json()
    assert listed["code"] == 1
    assert listed["count"] == 50  # limit is capped at 50
    assert [r["trade_no"] for r in listed["data"]] == sorted(trade_nos, reverse=True)[:50]
    assert listed["data"][0]["money"] == "10.00" and listed["data"][0]["status"] == 0

    page = (await api(client, sim, act="orders", limit="2", offset="50")).json()
    assert [r["trade_no"] for r in page["data"]] == sorted(trade_nos, reverse=True)[50:]

    no_paid = await api(client, sim, act="orders", status="1")
    assert (no_paid.status_code, no_paid.content) == (500, b"")
    sim.gateway.buyer_visits("main", trade_nos[3])
    paid = (await api(client, sim, act="orders", status="1")).json()
    assert [r["trade_no"] for r in paid["data"]] == [trade_nos[3]]


async def test_settle_is_null_until_a_settlement_exists(sim: SimServer, client: httpx.AsyncClient) -> None:
    assert (await api(client, sim, act="settle")).json() == {
        "code": 1,
        "msg": "查询结算记录成功！",
        "data": None,
    }
    sim.gateway.buyer_visits("main", await create(client, sim, "SETTLE1", money="25.5"))
    sim.gateway.settle("main")
    data = (await api(client, sim, act="settle")).json()["data"]
    assert len(data) == 1
    assert (data[0]["money"], data[0]["status"], data[0]["uid"]) == ("25.50", 1, 1001)
    assert (await api(client, sim, act="query")).json()["money"] == "0.00"


async def test_unknown_channel_is_404_and_pay_page_is_html(sim: SimServer, client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{sim.base_url}/nowhere/api.php")).status_code == 404
    trade_no = await create(client, sim, "PAGE01")
    page = await client.get(f"{sim.endpoint('main')}pay/submit/{trade_no}/")
    assert page.status_code == 200 and trade_no in page.text
    assert sim.gateway.ground_truth()[0].paid is False  # visiting the pay page does not pay


# ---- faults -----------------------------------------------------------------------------------------


async def test_error_rate_answers_500_with_empty_body(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(error_rate=1.0)
    for reply in (await api(client, sim, act="query"), await mapi(client, sim, signed(order_params()))):
        assert (reply.status_code, reply.content) == (500, b"")
    assert (await api(client, sim, "spare", pid="2002", key=OTHER_KEY, act="query")).json()["code"] == 1
    sim.faults("main").update(error_rate=0.0)
    assert (await api(client, sim, act="query")).json()["code"] == 1


async def test_partial_error_rate_is_random_but_seeded(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(error_rate=0.5)
    codes = [(await api(client, sim, act="query")).status_code for _ in range(40)]
    assert set(codes) == {200, 500}
    assert 8 <= codes.count(500) <= 32


async def test_hang_rate_makes_the_client_time_out(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(hang_rate=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # the gateway hangs (for an hour): only the client's timeout ends it
        await client.get(sim.endpoint("main") + "api.php", params={"act": "query"}, timeout=0.3)
    assert time.monotonic() - started >= 0.3


async def test_stop_releases_hung_requests(client: httpx.AsyncClient) -> None:
    server = SimServer()
    await server.start()
    server.add_channel("main", 1001, KEY, Faults(hang_rate=1.0))
    pending = asyncio.ensure_future(client.get(server.endpoint("main") + "api.php", timeout=PATIENCE_S))
    assert await wait_until(lambda: server.gateway.hanging > 0)
    assert not pending.done()
    await server.stop()
    # Released, not cut off: a request still running when the graceful shutdown timed out would have been
    # cancelled, and its client would see the connection drop instead of this answer.
    reply = await asyncio.wait_for(pending, PATIENCE_S)
    assert reply.status_code == 504


async def test_bad_json_rate_serves_html(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(bad_json_rate=1.0)
    reply = await api(client, sim, act="query")
    assert reply.status_code == 200
    assert reply.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        reply.json()


async def test_latency_delays_every_request(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(latency_s=0.2)
    started = time.monotonic()
    reply = await api(client, sim, act="query")
    assert time.monotonic() - started >= 0.2
    assert reply.json()["code"] == 1


async def test_pay_probability_zero_pays_nothing(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.faults("main").update(pay_probability=0.0)
    trade_nos = [await create(client, sim, f"NOPAY{i}") for i in range(5)]
    assert [sim.gateway.buyer_visits("main", t) for t in trade_nos] == [False] * 5
    assert [t.paid for t in sim.gateway.ground_truth()] == [False] * 5
    assert (await api(client, sim, act="order", trade_no=trade_nos[0])).json()["status"] == 0
    assert (await api(client, sim, act="query")).json()["money"] == "0.00"


def test_faults_update_validates_names_and_ranges() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="unknown fault knob 'eror_rate'"):
        faults.update(eror_rate=0.5)
    for bad in ({"error_rate": 1.5}, {"latency_s": -1.0}, {"hang_rate": math.nan}, {"pay_probability": True}):
        with pytest.raises(ValueError):
            faults.update(**bad)
    with pytest.raises(ValueError):
        faults.update(error_rate=0.2, callback_delay_s=-3)  # nothing applied when one value is bad
    assert faults == Faults()
    faults.update(error_rate=0.25, latency_s=2)
    assert (faults.error_rate, faults.latency_s) == (0.25, 2.0)
    with pytest.raises(ValueError):
        Faults(callback_drop_rate=2.0)


# ---- notify -----------------------------------------------------------------------------------------


async def test_notify_is_a_signed_get_like_epay(
    sim: SimServer, client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    trade_no = await create(client, sim, "NOTIFY1", notify_url=url, money="10.00", param="p=1")
    assert sim.gateway.buyer_visits("main", trade_no)
    assert await sim.gateway.wait_notifies(PATIENCE_S)

    assert len(rec.hits) == 1
    items, headers = rec.hits[0]
    assert [k for k, _ in items] == [
        "pid",
        "trade_no",
        "out_trade_no",
        "type",
        "name",
        "money",
        "trade_status",
        "param",
        "sign",
        "sign_type",
    ]
    params = dict(items)
    assert (params["pid"], params["trade_no"], params["money"], params["trade_status"]) == (
        "1001",
        trade_no,
        "10",
        "TRADE_SUCCESS",
    )
    assert params["param"] == "p=1"
    assert verify_md5(params, KEY)
    assert "Chrome/78.0.3904.108" in headers["user-agent"]

    (truth,) = sim.gateway.ground_truth()
    assert (truth.paid, truth.callback_sent, truth.callback_acknowledged, truth.callback_dropped) == (
        True,
        True,
        True,
        False,
    )
    assert truth.money == Decimal("10.00")
    assert truth.attempts[0].status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "redirect", "acked"),
    [
        ("fail", 200, False, False),
        ("<html>SUCCESS</html>", 500, False, True),  # substring match, any status
        ("", 200, True, False),  # redirects are not followed
    ],
)
async def test_notify_ack_rule(
    sim: SimServer,
    client: httpx.AsyncClient,
    receiver: tuple[Receiver, str],
    body: str,
    status: int,
    redirect: bool,
    acked: bool,
) -> None:
    rec, url = receiver
    rec.body, rec.status, rec.redirect = body, status, redirect
    sim.gateway.buyer_visits("main", await create(client, sim, "ACK01", notify_url=url))
    assert await sim.gateway.wait_notifies(PATIENCE_S)
    (truth,) = sim.gateway.ground_truth()
    assert truth.callback_sent is True
    assert truth.callback_acknowledged is acked
    assert len(rec.hits) == (1 if acked else 5)  # unacknowledged: the first try and 4 cron retries


async def test_unreachable_notify_url_is_recorded(sim: SimServer, client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/notify"
    sim.gateway.buyer_visits("main", await create(client, sim, "DEAD01", notify_url=dead))
    assert await sim.gateway.wait_notifies(PATIENCE_S)
    (truth,) = sim.gateway.ground_truth()
    assert truth.callback_sent and not truth.callback_acknowledged
    assert len(truth.attempts) == 5
    assert truth.attempts[0].status_code is None
    assert truth.attempts[0].error is not None and truth.attempts[0].error.startswith("ConnectError")


async def test_callback_delay_and_drop(client: httpx.AsyncClient, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    async with SimServer(rng=random.Random(3)) as sim:
        sim.add_channel("slow", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.3))
        sim.add_channel("lossy", 1001, KEY, Faults(pay_probability=1.0, callback_drop_rate=1.0))
        for channel in ("slow", "lossy"):
            reply = await mapi(client, sim, signed(order_params(f"CB{channel}", notify_url=url)), channel)
            assert sim.gateway.buyer_visits(channel, reply.json()["trade_no"])
        assert sim.gateway.pending_notifies == 1
        assert await sim.gateway.wait_notifies(PATIENCE_S)
        slow, lossy = sim.gateway.ground_truth()
    assert slow.paid_at is not None and slow.callback_sent_at is not None
    assert (slow.callback_sent_at - slow.paid_at).total_seconds() >= 0.3
    assert slow.callback_acknowledged
    assert (lossy.paid, lossy.callback_dropped, lossy.callback_sent, lossy.callback_acknowledged) == (
        True,
        True,
        False,
        False,
    )
    assert [dict(items)["out_trade_no"] for items, _ in rec.hits] == ["CBslow"]


# ---- server -----------------------------------------------------------------------------------------


async def test_fixed_port_and_busy_port(client: httpx.AsyncClient) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        with pytest.raises(OSError):
            await SimServer(port=busy).start()
    async with SimServer(port=busy) as sim:  # free again
        sim.add_channel("main", 1001, KEY)
        assert sim.base_url == f"http://127.0.0.1:{busy}"
        assert (await api(client, sim, act="query")).json()["code"] == 1


# ---- notify retries and notify faults ----------------------------------------------------------------


def test_retry_delays_are_validated() -> None:
    with pytest.raises(ValueError):
        EpayGateway(notify_retry_delays=(-1.0,))


async def test_unacknowledged_notify_is_retried_on_the_schedule_then_given_up(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.body = "fail"
    delays = (0.05, 0.1, 0.15, 0.2)
    async with SimServer(EpayGateway(rng=random.Random(5), notify_retry_delays=delays)) as sim:
        sim.add_channel("main", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0))
        assert sim.gateway.buyer_visits("main", await create(client, sim, "RETRY01", notify_url=url))
        assert await sim.gateway.wait_notifies(PATIENCE_S)
        (truth,) = sim.gateway.ground_truth()
    assert len(rec.hits) == 5
    assert (truth.callback_sent, truth.callback_acknowledged) == (True, False)
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(truth.attempts, truth.attempts[1:], strict=False)]
    assert all(d - 0.01 <= g < d + 0.15 for g, d in zip(gaps, delays, strict=True)), gaps


async def test_retries_stop_at_the_first_acknowledgement(
    sim: SimServer, client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.fail_first = 2
    sim.gateway.buyer_visits("main", await create(client, sim, "RETRY02", notify_url=url))
    assert await sim.gateway.wait_notifies(PATIENCE_S)
    (truth,) = sim.gateway.ground_truth()
    assert [a.acknowledged for a in truth.attempts] == [False, False, True]
    assert truth.callback_acknowledged and len(rec.hits) == 3


async def test_without_cron_a_failed_notify_is_never_retried(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.body = "fail"
    async with SimServer(EpayGateway(rng=random.Random(5), cron_notify=False)) as sim:
        sim.add_channel("main", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0))
        sim.gateway.buyer_visits("main", await create(client, sim, "NOCRON", notify_url=url))
        assert await sim.gateway.wait_notifies(PATIENCE_S)
        (truth,) = sim.gateway.ground_truth()
    assert len(rec.hits) == 1 and len(truth.attempts) == 1 and not truth.callback_acknowledged


async def test_duplicate_callback_sends_the_notify_twice(
    sim: SimServer, client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    sim.faults("main").update(duplicate_callback_rate=1.0)
    trade_no = await create(client, sim, "DUP01", notify_url=url)
    sim.gateway.buyer_visits("main", trade_no)
    assert await sim.gateway.wait_notifies(PATIENCE_S)
    assert [dict(items)["trade_no"] for items, _ in rec.hits] == [trade_no, trade_no]
    assert all(verify_md5(dict(items), KEY) for items, _ in rec.hits)
    (truth,) = sim.gateway.ground_truth()
    assert [a.acknowledged for a in truth.attempts] == [True, True]


async def test_bad_signature_corrupts_every_attempt_of_the_notify(
    sim: SimServer, client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.check_key = KEY  # the shop rejects a notify whose signature does not verify
    sim.faults("main").update(bad_signature_rate=1.0)
    sim.gateway.buyer_visits("main", await create(client, sim, "BADSIG", notify_url=url))
    assert await sim.gateway.wait_notifies(PATIENCE_S)
    assert len(rec.hits) == 5
    for items, _ in rec.hits:
        params = dict(items)
        assert re.fullmatch(r"[0-9a-f]{32}", params["sign"]) and not verify_md5(params, KEY)
    (truth,) = sim.gateway.ground_truth()
    assert (truth.paid, truth.callback_sent, truth.callback_acknowledged) == (True, True, False)


# ---- maintenance, settlement, balance ----------------------------------------------------------------


async def test_maintenance_is_a_well_formed_epay_error(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.gateway.add_channel("legacy", 3003, KEY, flavour="old")
    for channel in ("main", "legacy"):
        sim.faults(channel).update(maintenance_rate=1.0)
    created = await mapi(client, sim, signed(order_params()))
    assert created.headers["content-type"] == "application/json; charset=UTF-8"
    assert created.json() == {"code": -1, "msg": "系统维护中，请稍后再试"}
    assert "系统维护中" in created.text  # mapi errors are JSON_UNESCAPED_UNICODE
    for channel, content_type in (("main", "application/json"), ("legacy", "text/html")):
        reply = await api(client, sim, channel, act="query")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == f"{content_type}; charset=UTF-8"
        assert reply.json() == {"code": -1, "msg": "系统维护中，请稍后再试"}
    assert sim.gateway.ground_truth() == []


async def test_settlement_stall_leaves_the_balance_unpaid(sim: SimServer, client: httpx.AsyncClient) -> None:
    sim.gateway.buyer_visits("main", await create(client, sim, "STALL1", money="12.5"))
    sim.faults("main").update(settlement_stall=True)
    first, second = sim.gateway.settle("main"), sim.gateway.settle("main")
    assert (first["status"], first["money"], first["endtime"]) == (2, "12.50", None)  # 正在结算
    assert second["status"] == 0  # 待结算, queued behind the stuck one
    assert (await api(client, sim, act="query")).json()["money"] == "12.50"

    sim.faults("main").update(settlement_stall=False)
    done = sim.gateway.settle("main")
    assert (done["status"], done["money"], done["endtime"]) == (1, "12.50", "2026-11-26 11:12:00")
    data = (await api(client, sim, act="settle")).json()["data"]
    assert [(r["id"], r["status"]) for r in data] == [(3, 1), (2, 0), (1, 2)]
    assert (await api(client, sim, act="query")).json()["money"] == "0.00"


async def test_balance_grows_with_the_gateway_clock() -> None:
    clock = FixedClock(START)
    async with SimServer(EpayGateway(rng=random.Random(1), clock=clock)) as sim:
        sim.add_channel("main", 1001, KEY, Faults(balance_growth_per_min=1.5))
        clock.advance(600)
        assert sim.gateway.balance("main") == Decimal("15.00")
        sim.faults("main").update(balance_growth_per_min=0.0)
        clock.advance(600)
        assert sim.gateway.balance("main") == Decimal("15.00")  # a knob change counts from then on
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await api(client, sim, act="query")).json()["money"] == "15.00"
        assert sim.gateway.settle("main")["money"] == "15.00"
        assert sim.gateway.balance("main") == Decimal("0.00")


# ---- EP-old flavour ----------------------------------------------------------------------------------


@pytest.fixture
async def old(sim: SimServer) -> SimServer:
    sim.gateway.add_channel("legacy", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0), flavour="old")
    return sim


async def test_old_mapi_takes_get_and_answers_json(old: SimServer, client: httpx.AsyncClient) -> None:
    url = old.endpoint("legacy") + "mapi.php"
    reply = await client.get(url, params=signed(order_params("OLD01")))
    assert reply.headers["content-type"] == "application/json; charset=UTF-8"
    body = reply.json()
    assert body["code"] == 1 and body["payurl"].endswith(f"/legacy/pay/submit/{body['trade_no']}/")
    nothing = await client.post(url)
    assert (nothing.text, nothing.headers["content-type"]) == ('{"code":-4}', "text/html; charset=UTF-8")


async def test_old_errors(old: SimServer, client: httpx.AsyncClient) -> None:
    for case, params, msg in [
        ("bad-sign", {**signed(order_params()), "sign": "0" * 32}, "签名校验失败，请返回重试！"),
        ("zero-pid", signed(order_params(pid="0")), "PID不存在"),
        ("unknown-pid", signed(order_params(pid="77")), "商户不存在！"),
    ]:
        assert (await mapi(client, old, params, "legacy")).json() == {"code": -1, "msg": msg}, case
    for case, query, expected in [
        ("bad-pid", {"act": "query", "pid": "9"}, {"code": -3, "msg": "PID不存在"}),
        ("bad-key", {"act": "query", "key": "wrong"}, {"code": -2, "msg": "KEY校验失败"}),
        ("unknown-act", {"act": "nope"}, {"code": -5, "msg": "No Act!"}),
        ("isset-trade-no", {"act": "order", "trade_no": ""}, {"code": -1, "msg": "订单号不存在"}),
    ]:
        reply = await api(client, old, "legacy", **query)
        assert reply.headers["content-type"] == "text/html; charset=UTF-8", case
        assert reply.json() == expected, case


async def test_old_api_quirks(old: SimServer, client: httpx.AsyncClient) -> None:
    trade_no = (await mapi(client, old, signed(order_params("OLD02", money="25.5")), "legacy")).json()["trade_no"]
    no_id = await api(client, old, "legacy", act="order")
    assert no_id.text == '{"code":-4,"msg":"参数不完整"}'  # a hand-written literal, raw UTF-8

    old.gateway.buyer_visits("legacy", trade_no)
    order = (await api(client, old, "legacy", act="order", out_trade_no="OLD02")).json()
    assert order["msg"] == "查询订单号成功！"
    assert {"api_trade_no", "bill_trade_no", "payurl"}.isdisjoint(order)
    assert (order["trade_no"], order["money"], order["status"]) == (trade_no, "25.50", 1)

    info = (await api(client, old, "legacy", act="query")).json()
    assert (info["order_today"], info["order_lastday"], info["money"]) == ("25.50", None, "25.50")
    assert "orders_today" not in info

    assert (await api(client, old, "legacy", act="orders", status="0")).json()["count"] == 1  # no filter

    old.gateway.settle("legacy")
    settle = (await api(client, old, "legacy", act="settle")).json()
    assert (settle["pid"], settle["key"], settle["type"]) == (1001, KEY, None)
    (row,) = settle["data"]
    assert (row["id"], row["0"], row["uid"], row["1"], row["money"], row["7"]) == (1, 1, 1001, 1001, "25.50", "25.50")
    assert len(row) == 32  # 16 columns, by name and by position (FETCH_BOTH)
