"""The simulated shop and its traffic against the epay simulator over real HTTP, checked via the JSONL log."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from monitor.clock import FixedClock
from monitor.models import EVENT_KINDS
from monitor.protocols.epay import notify_params, sign_md5
from monitor.sim import Faults, Shop, ShopTraffic, SimServer
from tests.conftest import PATIENCE_S, wait_until

KEY = "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def kinds(path: Path, order_id: str) -> list[object]:
    return [e["event"] for e in events(path) if e["order_id"] == order_id]


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(rng=random.Random(11)) as server:
        server.add_channel("main", 1001, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0))
        yield server


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "orders.jsonl"


@pytest.fixture
async def shop(sim: SimServer, log_path: Path) -> AsyncIterator[Shop]:
    async with Shop(log_path, rng=random.Random(5), request_timeout=0.3) as s:
        s.add_channel("main", endpoint=sim.endpoint("main"), pid=1001, key=KEY)
        yield s


async def notify(shop: Shop, params: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(shop.notify_url, params=params)


def forged(
    order_id: str, trade_no: str, *, key: str = KEY, money: str = "10.00", **extra: str
) -> dict[str, str]:
    """A notify as the gateway would send it, plus ``extra`` fields (signed too, as a newer gateway would)."""
    params = notify_params(
        pid=1001, trade_no=trade_no, out_trade_no=order_id, type="alipay", name=order_id, money=money, key=key
    )
    body = {k: v for k, v in params.items() if k not in ("sign", "sign_type")} | extra
    return {**body, "sign": sign_md5(body, key), "sign_type": "MD5"}


async def test_paid_order_writes_the_whole_funnel(sim: SimServer, shop: Shop, log_path: Path) -> None:
    order = await shop.place_order("main", "alipay", "10.00")
    assert re.fullmatch(r"[A-Z0-9]{16}", order.order_id)
    assert order.trade_no is not None and order.error is None
    assert kinds(log_path, order.order_id) == ["order_created", "pay_redirect"]

    assert sim.gateway.buyer_visits("main", order.trade_no)
    assert await sim.gateway.wait_notifies(PATIENCE_S)

    log = events(log_path)
    assert [e["event"] for e in log] == [
        "order_created",
        "pay_redirect",
        "callback_received",
        "order_paid",
        "order_delivered",
    ]
    created, redirect, callback, paid, _ = log
    assert {k: created[k] for k in ("order_id", "channel", "method", "amount")} == {
        "order_id": order.order_id,
        "channel": "main",
        "method": "alipay",
        "amount": "10.00",
    }
    assert redirect["trade_no"] == order.trade_no
    assert (callback["verified"], callback["trade_no"]) == (True, order.trade_no)
    assert "paid_at" not in callback  # a V1 notify carries no pay time
    assert (paid["trade_no"], paid["amount"]) == (order.trade_no, "10.00")
    assert all(TS.match(str(e["ts"])) for e in log)
    assert order.status == "completed"
    (truth,) = sim.gateway.ground_truth()
    assert truth.out_trade_no == order.order_id and truth.callback_acknowledged


async def test_forged_or_unknown_notifies_are_refused(shop: Shop, log_path: Path) -> None:
    order = await shop.place_order("main", "wxpay", "10.00")
    assert order.trade_no is not None
    reply = await notify(shop, forged(order.order_id, order.trade_no, key="not-the-key"))
    assert (reply.status_code, reply.text) == (200, "fail")
    assert (await notify(shop, forged("NOSUCHORDER00000", "1"))).text == "fail"
    log = events(log_path)
    assert [e["event"] for e in log] == ["order_created", "pay_redirect", "callback_received"]
    assert log[-1]["verified"] is False
    assert order.status == "wait_pay"


async def test_replayed_and_mismatched_notifies(shop: Shop, log_path: Path) -> None:
    order = await shop.place_order("main", "alipay", "10.00")
    assert order.trade_no is not None
    wrong_amount = await notify(shop, forged(order.order_id, order.trade_no, money="1"))
    assert (wrong_amount.status_code, wrong_amount.text) == (500, "fail")
    assert (await notify(shop, forged(order.order_id, order.trade_no))).text == "success"
    replay = await notify(shop, forged(order.order_id, order.trade_no))
    assert (replay.status_code, replay.text) == (500, "fail")  # completedOrder() refuses a completed order
    callbacks = [e for e in events(log_path) if e["event"] == "callback_received"]
    assert [c.get("detail") for c in callbacks] == ["amount mismatch", None, "already completed"]
    assert kinds(log_path, order.order_id).count("order_paid") == 1


async def test_pay_time_is_logged_when_a_notify_carries_one(shop: Shop, log_path: Path) -> None:
    order = await shop.place_order("main", "alipay", "10.00")
    assert order.trade_no is not None
    params = forged(order.order_id, order.trade_no, endtime="2026-11-26 11:12:00")
    assert (await notify(shop, params)).text == "success"
    callback = next(e for e in events(log_path) if e["event"] == "callback_received")
    assert callback["paid_at"] == "2026-11-26T11:12:00+08:00"


@pytest.mark.parametrize(
    ("knob", "error"),
    [
        ("error_rate", "http_error: 500"),
        ("bad_json_rate", "bad_response: not JSON"),
        ("hang_rate", "ReadTimeout"),
    ],
)
async def test_gateway_faults_leave_created_orders_that_expire(
    sim: SimServer, log_path: Path, knob: str, error: str
) -> None:
    clock = FixedClock(datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC))
    sim.faults("main").update(**{knob: 1.0})
    async with Shop(
        log_path, clock=clock, rng=random.Random(1), request_timeout=0.3, expire_after=300
    ) as shop:
        shop.add_channel("main", endpoint=sim.endpoint("main"), pid=1001, key=KEY)
        order = await shop.place_order("main", "alipay", "9.90")
        assert (order.trade_no, order.error) == (None, error)
        clock.advance(299)
        assert shop.expire_due() == []
        clock.advance(1)
        assert shop.expire_due() == [order]
        assert shop.expire_due() == []
    log = events(log_path)
    assert [e["event"] for e in log] == ["order_created", "order_expired"]
    assert log[0]["ts"] == "2026-11-26T03:12:00.000+00:00"
    assert log[1]["ts"] == "2026-11-26T03:17:00.000+00:00"


async def test_late_callback_completes_an_expired_order(sim: SimServer, log_path: Path) -> None:
    clock = FixedClock(datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC))
    async with Shop(log_path, clock=clock, rng=random.Random(2), expire_after=300) as shop:
        shop.add_channel("main", endpoint=sim.endpoint("main"), pid=1001, key=KEY)
        order = await shop.place_order("main", "alipay", "1.00")
        assert order.trade_no is not None
        clock.advance(600)
        assert shop.expire_due() == [order]
        assert sim.gateway.buyer_visits("main", order.trade_no)
        assert await sim.gateway.wait_notifies(PATIENCE_S)
    assert kinds(log_path, order.order_id) == [
        "order_created",
        "pay_redirect",
        "order_expired",
        "callback_received",
        "order_paid",
        "order_delivered",
    ]


async def test_dropped_callback_is_paid_at_the_gateway_but_silent_at_the_shop(
    sim: SimServer, shop: Shop, log_path: Path
) -> None:
    sim.faults("main").update(callback_drop_rate=1.0)
    order = await shop.place_order("main", "alipay", "25.50")
    assert order.trade_no is not None
    assert sim.gateway.buyer_visits("main", order.trade_no)
    assert await sim.gateway.wait_notifies(PATIENCE_S)  # nothing scheduled, nothing in flight: none will come
    (truth,) = sim.gateway.ground_truth()
    assert (truth.paid, truth.callback_dropped, truth.callback_sent) == (True, True, False)
    assert kinds(log_path, order.order_id) == ["order_created", "pay_redirect"]


async def test_traffic_log_matches_ground_truth(log_path: Path) -> None:
    async with SimServer(rng=random.Random(21)) as sim:
        sim.add_channel("steady", 1001, KEY, Faults(pay_probability=0.7, callback_delay_s=0.02))
        sim.add_channel(
            "lossy", 1002, KEY, Faults(pay_probability=0.7, callback_delay_s=0.02, callback_drop_rate=0.5)
        )
        sim.add_channel("flaky", 1003, KEY, Faults(pay_probability=1.0, callback_delay_s=0.0, error_rate=0.5))
        async with Shop(log_path, rng=random.Random(22), expire_after=0.3) as shop:
            traffic = ShopTraffic(
                shop,
                sim,
                ["steady", "lossy", "flaky"],
                rate_per_s=80.0,
                rng=random.Random(23),
                expire_check_s=0.05,
            )
            async with traffic:
                # ~1 s of traffic when the machine is idle; counted in orders, not seconds, when it is busy
                assert await wait_until(lambda: traffic.created >= 80)
            assert await sim.gateway.wait_notifies(PATIENCE_S)
            await asyncio.sleep(0.35)
            shop.expire_due()
        truth = sim.gateway.ground_truth()

    log = events(log_path)
    assert all(e["event"] in EVENT_KINDS and TS.match(str(e["ts"])) for e in log)
    by_order: dict[object, list[object]] = {}
    for e in log:
        by_order.setdefault(e["order_id"], []).append(e["event"])
    created = [e for e in log if e["event"] == "order_created"]
    assert len(created) == len(by_order) == traffic.created >= 40
    assert Counter(e["channel"] for e in created).keys() == {"steady", "lossy", "flaky"}

    # Only the flaky channel fails to open orders, and every opened order is one the gateway has.
    unopened = {e["channel"] for e in created if "pay_redirect" not in by_order[e["order_id"]]}
    assert unopened == {"flaky"}
    opened = {oid for oid, evs in by_order.items() if "pay_redirect" in evs}
    assert opened <= {t.out_trade_no for t in truth}
    assert traffic.opened == len(opened)

    for t in truth:
        evs = by_order.get(t.out_trade_no, [])
        if t.callback_acknowledged:
            assert evs.count("order_paid") == 1 and "callback_received" in evs, t
        else:
            assert "order_paid" not in evs, t
        if t.callback_dropped:
            assert t.paid and "callback_received" not in evs, t
        if t.paid and not t.callback_dropped:
            assert t.callback_acknowledged, t  # the shop was up, so every sent notify was acknowledged
    # Every order ends decided: paid, or expired (a late callback may still complete an expired order).
    for oid, evs in by_order.items():
        assert "order_paid" in evs or "order_expired" in evs, (oid, evs)
        if "order_paid" in evs and "order_expired" in evs:
            assert evs.index("order_expired") < evs.index("order_paid"), (oid, evs)

    dropped = [t for t in truth if t.callback_dropped]
    assert dropped and all(t.channel == "lossy" for t in dropped)
    assert sum(t.paid for t in truth) == traffic.paid


async def test_traffic_follows_weights_and_survives_hangs(sim: SimServer, shop: Shop, log_path: Path) -> None:
    sim.add_channel("stuck", 3003, KEY, Faults(hang_rate=1.0))
    traffic = ShopTraffic(shop, sim, {"main": 0.0, "stuck": 1.0}, rate_per_s=50.0, rng=random.Random(4))
    async with traffic:
        # orders on the stuck channel hang until the shop's request timeout...
        assert await wait_until(lambda: any(o.error is not None for o in shop.orders.values()))
        traffic.weights.update(main=1.0, stuck=0.0)
        # ...and the traffic goes on, now through main
        assert await wait_until(lambda: any(o.channel == "main" and o.trade_no for o in shop.orders.values()))
        assert traffic.created > traffic.opened
    await traffic.stop()  # idempotent
    stuck = [o for o in shop.orders.values() if o.channel == "stuck"]
    assert stuck and all(o.trade_no is None for o in stuck)
    # the hung gateway costs the request timeout (on a busy machine, even connecting can take longer than 0.3 s)
    errors = {o.error for o in stuck if o.error is not None}
    assert "ReadTimeout" in errors and errors <= {"ReadTimeout", "ConnectTimeout"}
    assert any(o.channel == "main" and o.trade_no for o in shop.orders.values())
