"""Held funds, refunds and closed trades over real HTTP: the reconciler, wired as ``paymon run`` wires it, against
simulated epay (EP-new status 4 预授权, EP-old status 3 已冻结, status 2 refunded), Alipay (TRADE_CLOSED after a
refund) and WeChat Pay (REFUND, USERPAYING) and the simulated shop. Held funds are their own class, reported once
with no invented time and released once; none of these is ever a lost order or replayed; and no lost-order record
anywhere (database row, outbox payload, status JSON) carries a pay time the channel did not give."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from monitor.cli import App
from monitor.protocols.alipay import generate_private_key_pem, public_key_pem
from monitor.reconcile.reconciler import ReconcileReport
from monitor.sim import Shop, SimServer
from monitor.sim.alipay import AlipayGateway
from monitor.sim.shop import ShopOrder
from monitor.sim.wxpay import WxpayGateway
from monitor.status import status_view
from monitor.store import tables as t
from monitor.store.reconcile import ReconcileStore
from monitor.timefmt import show_time
from tests.reconcile.simenv import SimEnv, paymon_clock

KEY = "held-funds-test-key-0123"
APP_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
WX = {"appid": "wx2421b1c4370ec43b", "mch_id": "10000100", "key": "192006250b4c09247ec02edce69f6a2d"}
DROP = {"pay_probability": 1.0, "callback_drop_rate": 1.0}

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
defaults: {callback_deadline: 5m}
sources: [{kind: jsonl, path: var/orders.jsonl, timezone: UTC}]
reconcile: {every: 1m, older_than: 5m, horizon: 24h, replay_notify: true, rate: 1000, per_round: 100}
notify: {language: en}
routing: {mode: off}
"""


def channels_yaml(sim: SimServer, shop: Shop) -> str:
    platform_pub = public_key_pem(PLATFORM_KEY).replace("\n", "\\n")
    app_key = APP_KEY.replace("\n", "\\n")
    def epay(pid: int) -> str:
        return f'kind: epay, weight: 1, credentials: {{pid: "{pid}", key: "{KEY}"}}, notify_url: "{shop.notify_url}"'

    wx_notify = shop.notify_url_for("wxpay_v2")
    return f"""channels:
  - {{id: ep-new, endpoint: "{sim.endpoint('ep-new')}", {epay(1001)}}}
  - {{id: ep-old, endpoint: "{sim.endpoint('ep-old')}", {epay(1002)}}}
  - {{id: ali, kind: alipay_f2f, weight: 1, endpoint: "{sim.endpoint('ali')}",
     credentials: {{app_id: "2021000000000001", private_key: "{app_key}", alipay_public_key: "{platform_pub}"}}}}
  - {{id: wx, kind: wxpay_v2, weight: 1, endpoint: "{sim.endpoint('wx')}", notify_url: "{wx_notify}",
     credentials: {{appid: {WX['appid']}, mch_id: "{WX['mch_id']}", key: "{WX['key']}"}}}}
"""


class Env(SimEnv):
    def start(self) -> App:
        (self.folder / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
        (self.folder / "channels.yaml").write_text(channels_yaml(self.sim, self.shop), encoding="utf-8")
        return self.build()

    async def round(self) -> ReconcileReport:
        return await self.reconcile()

    async def order(self, channel: str, **knobs: float) -> ShopOrder:
        """An order the buyer reaches the pay page of, with the channel's knobs set to ``knobs`` (+ no notify)."""
        order = await self.shop.place_order(channel, "alipay", "10.00")
        assert order.trade_no is not None, order.error
        self.sim.faults(channel).update(**{**DROP, "held_rate": 0.0, "refund_rate": 0.0, "paying_rate": 0.0,
                                           **knobs})
        self.sim.gateway_of(channel).buyer_visits(channel, order.trade_no)
        return order


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    folder = tmp_path / "cfg"
    (folder / "var").mkdir(parents=True)
    async with SimServer() as sim, Shop(folder / "var" / "orders.jsonl") as shop, httpx.AsyncClient() as client:
        sim.add_channel("ep-new", "1001", KEY)
        sim.gateway.add_channel("ep-old", 1002, KEY, flavour="old")
        sim.register("ep-old", sim.gateway)
        ali = sim.add_gateway(AlipayGateway(platform_private_key=PLATFORM_KEY))
        ali.add_channel("ali", app_id="2021000000000001", app_private_key=APP_KEY)  # type: ignore[attr-defined]
        wx = sim.add_gateway(WxpayGateway())
        wx.add_channel("wx", **WX)  # type: ignore[attr-defined]
        for ch in ("ep-new", "ep-old", "ali", "wx"):
            gw = sim.gateway_of(ch)
            shop.add_channel(ch, endpoint=sim.endpoint(ch), kind=gw.kind,
                             **shop.adapters[gw.kind].credentials_of(gw, ch))
        e = Env(folder, sim, shop, paymon_clock(), client, io.StringIO())
        yield e
        e.close()


async def test_held_refunded_and_closed_orders_are_never_lost_paid_or_replayed(env: Env) -> None:
    preauth = await env.order("ep-new", held_rate=1.0)       # EP-new 4 预授权
    frozen = await env.order("ep-old", held_rate=1.0)        # EP-old 3 已冻结
    refunded = await env.order("ep-new", refund_rate=1.0)    # epay 2
    closed = await env.order("ali", refund_rate=1.0)         # Alipay TRADE_CLOSED after a full refund
    wx_refund = await env.order("wx", refund_rate=1.0)       # WeChat REFUND
    paying = await env.order("wx", paying_rate=1.0)          # WeChat USERPAYING
    lost = await env.order("ep-old")                         # a plain lost order, for contrast
    truth = {t.out_trade_no: t for t in env.sim.ground_truth()}
    assert (truth[preauth.order_id].held, truth[frozen.order_id].held, truth[refunded.order_id].refunded) == (
        True, True, True)
    epay_rows = {o.out_trade_no: o for ch in ("ep-new", "ep-old") for o in env.sim.gateway.channel(ch).orders.values()}
    assert (epay_rows[preauth.order_id].status, epay_rows[frozen.order_id].status) == (4, 3)
    app = env.start()

    report = await env.round()
    assert report.errors == {}
    assert sorted(report.held) == sorted([preauth.order_id, frozen.order_id])
    assert report.paid == [lost.order_id] and report.replayed == {lost.order_id: True}
    assert (report.refunded, report.closed, report.unpaid) == (2, 1, 1)
    value = app.metrics.registry.get_sample_value
    for channel, result, n in (("ep-new", "held", 1), ("ep-old", "held", 1), ("ep-new", "refunded", 1),
                               ("wx", "refunded", 1), ("ali", "closed", 1), ("wx", "unpaid", 1)):
        assert value("paymon_reconcile_total", {"channel": channel, "result": result}) == n, (channel, result)
    book = ReconcileStore(app.store)
    assert [lo.order_id for lo in book.lost_orders()] == [lost.order_id]
    assert [r.order_id for r in book.replays()] == [lost.order_id]
    held = {h.order_id: h for h in book.held_funds()}
    assert {k: (h.channel, h.status, h.amount, h.seen_at, h.released_at) for k, h in held.items()} == {
        preauth.order_id: ("ep-new", "4", "10.00", env.clock.now(), None),
        frozen.order_id: ("ep-old", "3", "10.00", env.clock.now(), None),
    }
    assert held[preauth.order_id].trade_no == preauth.trade_no
    for o in (preauth, frozen, refunded, closed, wx_refund, paying):
        assert env.shop.order(o.order_id).status == "wait_pay"  # type: ignore[union-attr]

    app.pipeline.cycle()
    lines = env.lines()
    held_lines = sorted(line for line in lines if line.startswith("🟡 HELD FUNDS"))
    assert len(held_lines) == 2
    line = next(x for x in held_lines if preauth.order_id in x)
    assert "channel status 4 pre-authorised (预授权)" in line and "the shop has no order" in line
    assert f"paymon saw it at {show_time(env.clock.now())}" in line and "paid at" not in line  # display zone
    assert "channel status 3 frozen (已冻结)" in next(x for x in held_lines if frozen.order_id in x)
    lost_lines = [x for x in lines if x.startswith("🟠 LOST ORDER")]
    assert [x.split()[3] for x in lost_lines] == [lost.order_id]
    view = status_view(app.cfg, app.store, env.clock.now(), {})
    assert sorted((h["order_id"], h["status"], h["seen_at"]) for h in view["held_funds"]) == sorted([
        (preauth.order_id, "4", env.clock.now().isoformat()), (frozen.order_id, "3", env.clock.now().isoformat())])
    assert "paid_at" not in json.dumps(view["held_funds"])
    assert value("paymon_held_funds", {"channel": "ep-new"}) == 1
    assert value("paymon_held_funds", {"channel": "ali"}) == 0

    # the channel refunds the pre-authorised buyer: released once, with its own line; 已冻结 stays held
    epay_rows[preauth.order_id].status = 2
    env.clock.advance(timedelta(minutes=7))                    # due again (the age doubled)
    report = await env.round()
    assert report.replayed == {} and report.refused == {}
    app.pipeline.cycle()
    released = [x for x in env.lines() if x.startswith("✅ HELD FUNDS RELEASED")]
    assert len(released) == 1 and preauth.order_id in released[0] and "the channel refunded the buyer" in released[0]
    assert [h.order_id for h in book.held_funds(open_only=True)] == [frozen.order_id]
    assert [h.release for h in book.held_funds() if h.order_id == preauth.order_id] == ["refunded"]
    assert value("paymon_held_funds", {"channel": "ep-new"}) == 0
    env.clock.advance(timedelta(minutes=15))
    await env.round()
    app.pipeline.cycle()
    assert len([x for x in env.lines() if x.startswith("🟡 HELD FUNDS")]) == 2        # each reported once
    assert len([x for x in env.lines() if x.startswith("✅ HELD FUNDS RELEASED")]) == 1
    assert [lo.order_id for lo in book.lost_orders()] == [lost.order_id]               # never lost
    assert [r.order_id for r in book.replays()] == [lost.order_id]                     # never replayed


async def test_no_lost_order_record_anywhere_has_a_pay_time_the_channel_did_not_give(env: Env) -> None:
    with_time = await env.order("ep-new")
    without_time = await env.order("ep-new")
    held = await env.order("ep-new", held_rate=1.0)
    rows = {o.out_trade_no: o for o in env.sim.gateway.channel("ep-new").orders.values()}
    rows[without_time.order_id].paid_at = None                # epay gives this paid order no endtime
    app = env.start()
    report = await env.round()
    assert sorted(report.paid) == sorted([with_time.order_id, without_time.order_id])
    assert report.held == [held.order_id]
    env.clock.advance(timedelta(minutes=6))                   # past the deadline from when paymon learned it
    await env.round()
    app.pipeline.cycle()

    given = {with_time.order_id: rows[with_time.order_id].paid_at}  # the only pay time the channel gave
    assert given[with_time.order_id] is not None
    book = ReconcileStore(app.store)
    recorded = {lo.order_id: lo for lo in book.lost_orders()}
    assert set(recorded) == {with_time.order_id, without_time.order_id}    # held funds are never lost
    assert recorded[without_time.order_id].paid_learned_at is not None

    def check(order_id: str, paid_at: Any, where: str) -> None:
        if paid_at is None:
            return
        at = paid_at if isinstance(paid_at, datetime) else datetime.fromisoformat(str(paid_at))
        expected = given.get(order_id)
        assert expected is not None, f"{where}: {order_id} has a pay time the channel did not give"
        # the channel's pay time as given: epay's endtime is the simulator's pay time cut to whole seconds
        assert expected.replace(microsecond=0) <= at <= expected, where

    with app.store.engine.connect() as conn:
        for r in conn.execute(select(t.lost_orders)):
            check(r.order_id, r.channel_paid_at, "lost_orders row")
        for r in conn.execute(select(t.orders)):
            check(r.order_id, r.channel_paid_at, "orders row")
        payloads = [json.loads(p) for (p,) in conn.execute(select(t.outbox.c.payload))]
    lost_payloads = [p for p in payloads if p["type"] == "lost_order"]
    assert {p["order_id"] for p in lost_payloads} == set(recorded)
    for p in lost_payloads:
        check(p["order_id"], p["channel_paid_at"], "outbox payload")
    assert [p["paid_learned_at"] is not None for p in lost_payloads
            if p["order_id"] == without_time.order_id and p["kind"] == "found"] == [True]
    view = status_view(app.cfg, app.store, env.clock.now(), {})
    for lo in view["lost_orders"]:
        check(lo["order_id"], lo["channel_paid_at"], "status JSON")
    line = next(x for x in env.lines() if x.startswith("🟠 LOST ORDER") and without_time.order_id in x)
    assert "no pay time from the channel (paymon learned of it at" in line and "paid at the channel" not in line


async def test_no_notify_url_warning_for_a_kind_that_can_never_replay(env: Env,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        app = env.start()                        # replay_notify on; ali (Alipay: never replayable) has no notify_url
    assert app.reconciler is not None and "ali" in app.reconciler.queriers
    assert "no notify_url" not in caplog.text
