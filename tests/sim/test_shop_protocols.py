"""The simulated shop paying through Alipay 当面付, WeChat Pay v2 and epusdt over real HTTP, checked via the JSONL log.

Each protocol runs against its simulated gateway on a ``SimServer``: opening orders (and how gateway faults become
order errors), notifies (verified, corrupted, duplicated, forged), and shop traffic whose log must agree with the
gateway's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.protocols.alipay import generate_private_key_pem, public_key_pem, sign_rsa2
from monitor.protocols.epusdt import sign as epusdt_sign
from monitor.protocols.wxpay import sign_md5, to_xml
from monitor.sim import Faults, Shop, ShopTraffic, SimServer
from monitor.sim.alipay import AlipayGateway
from monitor.sim.epusdt import EpusdtGateway
from monitor.sim.shop import DEFAULT_AMOUNTS, ShopOrder
from monitor.sim.wxpay import WxpayGateway
from tests.conftest import PATIENCE_S, wait_until

APP_ID = "2021000000000001"
APP_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
OTHER_KEY = generate_private_key_pem(1024)
WX = {"appid": "wx2421b1c4370ec43b", "mch_id": "10000100", "key": "192006250b4c09247ec02edce69f6a2d"}
TOKEN = "epusdt_password_xasddawqe"
RETRIES = (0.05, 0.05)  # short notify retry schedules: 3 attempts per notify on every gateway
KINDS = ["alipay_f2f", "wxpay_v2", "epusdt"]

GATEWAYS: dict[str, Callable[[random.Random], Any]] = {
    "alipay_f2f": lambda rng: AlipayGateway(rng=rng, platform_private_key=PLATFORM_KEY, notify_retry_delays=RETRIES),
    "wxpay_v2": lambda rng: WxpayGateway(rng=rng, notify_retry_delays=RETRIES),
    "epusdt": lambda rng: EpusdtGateway(rng=rng, notify_max_retry=len(RETRIES), notify_retry_delays=RETRIES),
}
CHANNELS: dict[str, Callable[[Any, str, Faults], object]] = {
    "alipay_f2f": lambda gw, cid, f: gw.add_channel(cid, app_id=APP_ID, app_private_key=APP_KEY, faults=f),
    "wxpay_v2": lambda gw, cid, f: gw.add_channel(cid, faults=f, **WX),
    "epusdt": lambda gw, cid, f: gw.add_channel(cid, token=TOKEN, faults=f),
}


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def of(path: Path, order_id: str, event: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events(path) if e["order_id"] == order_id and event in (None, e["event"])]


@dataclass
class Env:
    kind: str
    sim: SimServer
    gw: Any
    shop: Shop
    log: Path

    async def paid_order(self, amount: str = "10.00") -> ShopOrder:
        """An order opened at the gateway and paid by its buyer (faults as set before the visit)."""
        order = await self.shop.place_order("ch", "alipay", amount)
        assert order.trade_no is not None, order.error
        assert self.gw.buyer_visits("ch", order.trade_no)
        return order

    async def post(self, content: bytes, content_type: str) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await client.post(self.shop.notify_url_for(self.kind), content=content,
                                     headers={"Content-Type": content_type})


@pytest.fixture(params=KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    kind: str = request.param
    gw = GATEWAYS[kind](random.Random(3))
    CHANNELS[kind](gw, "ch", Faults(pay_probability=1.0, callback_delay_s=0.0))
    log = tmp_path / "orders.jsonl"
    async with SimServer(rng=random.Random(1)) as sim, Shop(log, rng=random.Random(2), request_timeout=2.0) as shop:
        sim.add_gateway(gw)
        shop.add_channel("ch", endpoint=sim.endpoint("ch"), kind=kind,
                         **shop.adapters[kind].credentials_of(gw, "ch"))
        yield Env(kind, sim, gw, shop, log)


async def test_paid_order_goes_through_the_whole_funnel(env: Env) -> None:
    order = await env.paid_order("9.90")
    assert order.payurl is not None and order.payurl.startswith(
        {"alipay_f2f": "https://qr.alipay.com/", "wxpay_v2": "weixin://wxpay/", "epusdt": "http://127.0.0.1:"}[env.kind])
    assert await env.sim.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert (truth.out_trade_no, truth.money, truth.callback_acknowledged) == (order.order_id, Decimal("9.9"), True)
    assert [e["event"] for e in events(env.log)] == [
        "order_created", "pay_redirect", "callback_received", "order_paid", "order_delivered",
    ]
    redirect, callback, paid = (of(env.log, order.order_id, e)[0]
                                for e in ("pay_redirect", "callback_received", "order_paid"))
    # pay_redirect names what the buyer pays: Alipay our out_trade_no, WeChat the prepay_id, epusdt the trade_id.
    if env.kind == "wxpay_v2":
        ref = env.gw.channel("ch").orders[order.order_id].prepay_id
    else:
        ref = order.order_id if env.kind == "alipay_f2f" else truth.trade_no
    assert redirect["trade_no"] == ref
    assert (callback["verified"], callback["trade_no"]) == (True, truth.trade_no)
    assert (paid["trade_no"], paid["amount"]) == (truth.trade_no, "9.90")
    if env.kind == "epusdt":
        assert "paid_at" not in callback  # epusdt's callback carries no pay time
    else:
        assert callback["paid_at"].endswith("+08:00")
    assert order.status == "completed" and order.trade_no == truth.trade_no


async def test_corrupted_notify_signature_is_logged_unverified(env: Env) -> None:
    order = await env.shop.place_order("ch", "alipay", "10.00")
    assert order.trade_no is not None
    env.gw.faults("ch").update(bad_signature_rate=1.0)  # notifies only: the order is already open
    assert env.gw.buyer_visits("ch", order.trade_no)
    assert await env.sim.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert truth.paid and truth.callback_sent and not truth.callback_acknowledged
    assert len(truth.attempts) == 1 + len(RETRIES)  # refused, so the gateway retried to the end
    callbacks = of(env.log, order.order_id, "callback_received")
    assert len(callbacks) == len(truth.attempts)
    assert all(c["verified"] is False for c in callbacks)
    assert of(env.log, order.order_id, "order_paid") == []
    assert order.status == "wait_pay"


async def test_duplicate_notifies_complete_an_order_once(env: Env) -> None:
    env.gw.faults("ch").update(duplicate_callback_rate=1.0)
    order = await env.paid_order()
    assert await env.sim.wait_notifies(PATIENCE_S)
    (truth,) = env.gw.ground_truth()
    assert truth.callback_acknowledged
    # One copy is acknowledged; the other is refused ("already completed") on every attempt of its schedule.
    assert sorted(a.acknowledged for a in truth.attempts) == [False] * (1 + len(RETRIES)) + [True]
    refused = {a.status_code for a in truth.attempts if not a.acknowledged}
    assert refused == ({500} if env.kind == "epusdt" else {200})  # dujiaoka's epusdt handler lets it throw
    callbacks = of(env.log, order.order_id, "callback_received")
    assert [c.get("detail") for c in callbacks] == [None] + ["already completed"] * (1 + len(RETRIES))
    assert all(c["verified"] for c in callbacks)
    assert len(of(env.log, order.order_id, "order_paid")) == 1


#: Per protocol: (fault knobs, credentials the shop uses instead of the right ones, amount) -> the order's error.
OPEN_FAILURES: dict[str, list[tuple[dict[str, float], dict[str, str], str, str | None]]] = {
    "alipay_f2f": [
        ({"error_rate": 1.0}, {}, "1.00", "http_error: 500"),
        ({"bad_json_rate": 1.0}, {}, "1.00", "bad_response: not JSON"),
        ({"maintenance_rate": 1.0}, {}, "1.00", "maintenance: 20000 isp.unknow-error 系统繁忙"),
        ({"bad_signature_rate": 1.0}, {}, "1.00", "bad_signature: precreate reply"),
        ({}, {"app_private_key": OTHER_KEY}, "1.00", "business_error: 40002 isv.invalid-signature 验签出错"),
        ({}, {"alipay_public_key": public_key_pem(APP_KEY)}, "1.00", "bad_signature: precreate reply"),
    ],
    "wxpay_v2": [
        ({"error_rate": 1.0}, {}, "1.00", "http_error: 500"),
        ({"bad_json_rate": 1.0}, {}, "1.00", "bad_response: not XML"),
        ({"maintenance_rate": 1.0}, {}, "1.00", "maintenance: SYSTEMERROR 系统繁忙,请稍后再试"),
        ({"bad_signature_rate": 1.0}, {}, "1.00", "bad_signature: unifiedorder reply"),
        ({}, {"key": "0" * 32}, "1.00", "business_error: return_code FAIL 签名错误"),
    ],
    "epusdt": [
        ({"error_rate": 1.0}, {}, "1.00", "http_error: 500"),
        ({"bad_json_rate": 1.0}, {}, "1.00", "bad_response: not JSON"),
        ({"maintenance_rate": 1.0}, {}, "1.00", "business_error: 400 系统错误"),
        ({"bad_signature_rate": 1.0}, {}, "1.00", None),  # epusdt replies are not signed: the order opens
        ({}, {"token": "not-the-token"}, "1.00", "business_error: 401 签名认证错误"),
        ({}, {}, "0.01", "business_error: 400 支付金额 value should be greater than 0.01"),
    ],
}


async def test_gateway_faults_and_refusals_become_order_errors(env: Env) -> None:
    creds = env.shop.adapters[env.kind].credentials_of(env.gw, "ch")
    for i, (knobs, wrong, amount, error) in enumerate(OPEN_FAILURES[env.kind]):
        env.shop.add_channel(f"c{i}", endpoint=env.sim.endpoint("ch"), kind=env.kind, **(creds | wrong))
        env.gw.faults("ch").update(**knobs)
        before = len(env.gw.ground_truth())
        order = await env.shop.place_order(f"c{i}", "alipay", amount)
        env.gw.faults("ch").update(**dict.fromkeys(knobs, 0.0))
        assert (order.error or "").startswith(error or "") and (order.error is None) == (error is None), (i, order)
        assert (order.trade_no is None) == (error is not None)
        # Only a reply the shop could not trust leaves an order at the gateway that the shop never opened.
        created = len(env.gw.ground_truth()) - before
        assert created == (1 if error is None or error.startswith("bad_signature") else 0), (i, order)
        assert [e["event"] for e in of(env.log, order.order_id)] == (
            ["order_created"] if error else ["order_created", "pay_redirect"])


async def test_alipay_acknowledges_a_verified_unpaid_notify_without_completing(tmp_path: Path) -> None:
    gw = GATEWAYS["alipay_f2f"](random.Random(3))
    CHANNELS["alipay_f2f"](gw, "ch", Faults())
    async with SimServer() as sim, Shop(tmp_path / "orders.jsonl") as shop, httpx.AsyncClient() as client:
        sim.add_gateway(gw)
        shop.add_channel("ch", endpoint=sim.endpoint("ch"), kind="alipay_f2f",
                         **shop.adapters["alipay_f2f"].credentials_of(gw, "ch"))
        order = await shop.place_order("ch", "alipay", "10.00")
        url = shop.notify_url_for("alipay_f2f")

        async def notify(key: str, **fields: str) -> str:
            params = {"app_id": APP_ID, "notify_type": "trade_status_sync", "out_trade_no": order.order_id,
                      "trade_no": "2026112622001000000000000001", "total_amount": "10.00", **fields}
            params["sign"] = sign_rsa2(params, key, notify=True)
            params["sign_type"] = "RSA2"
            return (await client.post(url, data=params)).text

        assert await notify(PLATFORM_KEY, trade_status="WAIT_BUYER_PAY") == "success"
        assert await notify(APP_KEY, trade_status="TRADE_SUCCESS") == "fail"  # not Alipay's key
        assert await notify(PLATFORM_KEY, trade_status="TRADE_SUCCESS", total_amount="1.00") == "fail"
        assert await notify(PLATFORM_KEY, trade_status="TRADE_FINISHED") == "success"
        assert await notify(PLATFORM_KEY, trade_status="TRADE_FINISHED") == "fail"  # already completed
        assert (await client.post(url, data={"out_trade_no": "NOSUCHORDER00000"})).text == "error"
    callbacks = [e for e in events(shop.log_path) if e["event"] == "callback_received"]
    assert [(c["verified"], c.get("detail")) for c in callbacks] == [
        (True, "trade_status WAIT_BUYER_PAY"), (False, None), (True, "amount mismatch"), (True, None),
        (True, "already completed"),
    ]
    assert [e["event"] for e in events(shop.log_path)].count("order_paid") == 1


async def test_wxpay_and_epusdt_forged_notifies(tmp_path: Path) -> None:
    """WeChat: total_fee is fen, an unknown order is ``error``; epusdt: a refused completion is HTTP 500."""
    wx, usdt = GATEWAYS["wxpay_v2"](random.Random(3)), GATEWAYS["epusdt"](random.Random(4))
    CHANNELS["wxpay_v2"](wx, "wx", Faults())
    CHANNELS["epusdt"](usdt, "usdt", Faults())
    async with SimServer() as sim, Shop(tmp_path / "orders.jsonl") as shop, httpx.AsyncClient() as client:
        for gw, cid in ((wx, "wx"), (usdt, "usdt")):
            sim.add_gateway(gw)
            shop.add_channel(cid, endpoint=sim.endpoint(cid), kind=gw.kind,
                             **shop.adapters[gw.kind].credentials_of(gw, cid))
        wx_order = await shop.place_order("wx", "wxpay", "25.50")
        usdt_order = await shop.place_order("usdt", "alipay", "25.50")

        async def wx_notify(**fields: object) -> httpx.Response:
            body = {"appid": WX["appid"], "mch_id": WX["mch_id"], "out_trade_no": wx_order.order_id,
                    "transaction_id": "4200000001202611260000000001", "total_fee": 2550, **fields}
            body["sign"] = sign_md5(body, WX["key"])
            return await client.post(shop.notify_url_for("wxpay_v2"), content=to_xml(body))

        async def usdt_notify(**fields: object) -> httpx.Response:
            body = {"trade_id": "202611261764132000123", "order_id": usdt_order.order_id, "amount": 25.5,
                    "status": 2, **fields}
            body["signature"] = epusdt_sign(body, TOKEN)
            return await client.post(shop.notify_url_for("epusdt"), json=body)

        assert (await wx_notify(total_fee=255)).text == "fail"  # 2.55 is not 25.50
        assert (await wx_notify(result_code="FAIL")).text == "success"  # dujiaoka ignores result_code
        assert (await wx_notify(out_trade_no="NOSUCHORDER00000")).text == "error"
        assert (await client.post(shop.notify_url_for("wxpay_v2"), content=b"<xml><a>")).text == "fail"
        mismatch = await usdt_notify(amount=25.49)
        assert (mismatch.status_code, mismatch.text) == (500, "fail")
        assert (await usdt_notify()).text == "ok"
        assert (await usdt_notify(order_id="NOSUCHORDER00000")).text == "fail"
    assert (wx_order.status, wx_order.trade_no) == ("completed", "4200000001202611260000000001")
    assert (usdt_order.status, usdt_order.trade_no) == ("completed", "202611261764132000123")


def test_alipay_credentials_come_from_the_gateway_and_stay_hidden(tmp_path: Path) -> None:
    gw = GATEWAYS["alipay_f2f"](random.Random(3))
    gw.add_channel("pub", app_id=APP_ID, app_public_key=public_key_pem(APP_KEY))
    CHANNELS["alipay_f2f"](gw, "priv", Faults())
    assert gw.channel("priv").app_public_key == public_key_pem(APP_KEY)  # derived from the private key
    shop = Shop(tmp_path / "orders.jsonl")
    with pytest.raises(ValueError, match="app_private_key"):
        shop.adapters["alipay_f2f"].credentials_of(gw, "pub")
    creds = shop.adapters["alipay_f2f"].credentials_of(gw, "priv")
    assert creds == {"app_id": APP_ID, "app_private_key": APP_KEY, "alipay_public_key": public_key_pem(PLATFORM_KEY)}
    channel = shop.add_channel("priv", endpoint="http://127.0.0.1:9/priv/", kind="alipay_f2f", **creds)
    assert "PRIVATE" not in repr(channel) and "PRIVATE" not in repr(gw.channel("priv"))


@pytest.mark.parametrize("kind", KINDS)
async def test_traffic_log_matches_ground_truth(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "orders.jsonl"
    gw = GATEWAYS[kind](random.Random(31))
    CHANNELS[kind](gw, "ch", Faults(pay_probability=0.7, callback_delay_s=0.02, callback_drop_rate=0.3,
                                    error_rate=0.2))
    # epusdt refuses amounts <= 0.01 CNY (its validator), which would be a second kind of unopened order.
    amounts = [a for a in DEFAULT_AMOUNTS if kind != "epusdt" or a > Decimal("0.01")]
    async with SimServer(rng=random.Random(30)) as sim:
        sim.add_gateway(gw)
        async with Shop(log, rng=random.Random(32), expire_after=0.3) as shop:
            traffic = ShopTraffic(shop, sim, ["ch"], rate_per_s=40.0, rng=random.Random(33), amounts=amounts,
                                  expire_check_s=0.05)
            async with traffic:  # ~1 s of orders when the machine is idle; counted in orders when it is busy
                assert await wait_until(lambda: traffic.created >= 40)
            assert await sim.wait_notifies(PATIENCE_S)
            await asyncio.sleep(0.35)
            shop.expire_due()
        truth = sim.ground_truth()

    assert traffic.created >= 25
    by_order: dict[str, list[dict[str, Any]]] = {}
    for e in events(log):
        by_order.setdefault(e["order_id"], []).append(e)
    assert len(by_order) == traffic.created
    kinds_of = {oid: [e["event"] for e in evs] for oid, evs in by_order.items()}

    # Unopened orders are exactly the ones the gateway answered with HTTP 500; every opened one is at the gateway.
    opened = {oid for oid, evs in kinds_of.items() if "pay_redirect" in evs}
    unopened = {o.error for o in shop.orders.values() if o.order_id not in opened}
    assert unopened == {"http_error: 500"}
    assert opened == {t.out_trade_no for t in truth} and traffic.opened == len(opened)

    for t in truth:
        evs = kinds_of[t.out_trade_no]
        callbacks = [e for e in by_order[t.out_trade_no] if e["event"] == "callback_received"]
        assert len(callbacks) == len(t.attempts), t  # every notify attempt reached the shop and was logged
        if t.callback_acknowledged:
            assert evs.count("order_paid") == 1 and callbacks[0]["verified"], t
            paid = next(e for e in by_order[t.out_trade_no] if e["event"] == "order_paid")
            assert (paid["trade_no"], Decimal(paid["amount"])) == (t.trade_no, t.money), t
        else:
            assert "order_paid" not in evs, t
        if t.callback_dropped:
            assert t.paid and not callbacks, t
        if t.paid and not t.callback_dropped:
            assert t.callback_acknowledged, t  # the shop was up and every notify was genuine
        if not t.paid:
            assert not callbacks and "order_expired" in evs, t
    for oid, evs in kinds_of.items():
        assert "order_paid" in evs or "order_expired" in evs, (oid, evs)
    assert sum(t.paid for t in truth) == traffic.paid
    assert any(t.callback_dropped for t in truth) and any(not t.paid for t in truth)
    assert any(t.callback_acknowledged for t in truth)
