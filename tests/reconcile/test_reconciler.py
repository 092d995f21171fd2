"""The reconciler, wired as ``paymon run`` wires it, against the simulator and the simulated shop over real HTTP:
unpaid orders asked about with back-off, paid-but-unnotified ones found and reported lost by id, one audited
replay each (and never a second, even after a restart), a failing channel left alone after three failures, and
the channels that cannot be reconciled named."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from monitor.cli import App, build_app
from monitor.clock import FixedClock, utc
from monitor.config import load_config
from monitor.probes.base import ProbeContext
from monitor.reconcile import QUERIERS
from monitor.reconcile.reconciler import MAX_FAILURES, build_queriers
from monitor.sim import Faults, Shop, SimServer
from monitor.sim.shop import ShopOrder
from monitor.store import tables as t
from monitor.store.reconcile import ReconcileStore
from tests.reconcile.simenv import SimEnv, paymon_clock

KEY = "reconciler-test-key-0123"

MONITOR = """\
storage: {{url: "sqlite:///var/paymon.db"}}
defaults: {{callback_deadline: 5m}}
sources: [{{kind: jsonl, path: var/orders.jsonl, timezone: UTC}}]
reconcile: {{every: 1m, older_than: 5m, horizon: 24h, replay_notify: {replay}, rate: 1000, per_round: {per_round}}}
notify: {{language: en}}
routing: {{mode: off}}
"""
CHANNELS = """\
channels:
  - id: shop-epay
    kind: epay
    weight: 10
    endpoint: "{endpoint}"
    credentials: {{pid: "1001", key: "{key}"}}
    {notify}
  - {{id: card, kind: stripe, weight: 5, endpoint: "http://127.0.0.1:9/", credentials: {{secret_key: sk_test_x}}}}
"""


class Env(SimEnv):
    def start(self, *, replay: bool = False, per_round: int = 100) -> App:
        notify = f'notify_url: "{self.shop.notify_url}"' if replay else ""
        (self.folder / "monitor.yaml").write_text(
            MONITOR.format(replay="true" if replay else "false", per_round=per_round), encoding="utf-8")
        (self.folder / "channels.yaml").write_text(
            CHANNELS.format(endpoint=self.sim.endpoint("shop-epay"), key=KEY, notify=notify), encoding="utf-8")
        return self.build()

    async def round(self) -> tuple[int, list[str], dict[str, str], dict[str, bool]]:
        r = await self.reconcile()
        return r.asked, sorted(r.paid), r.errors, r.replayed

    async def order(self, *, pays: bool) -> ShopOrder:
        order = await self.shop.place_order("shop-epay", "alipay", "10.00")
        assert order.trade_no is not None
        if pays:
            assert self.sim.gateway.buyer_visits("shop-epay", order.trade_no)
        return order


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    folder = tmp_path / "cfg"
    (folder / "var").mkdir(parents=True)
    async with SimServer() as sim, Shop(folder / "var" / "orders.jsonl") as shop, httpx.AsyncClient() as client:
        sim.add_channel("shop-epay", "1001", KEY, Faults(pay_probability=1.0, callback_drop_rate=1.0))
        shop.add_channel("shop-epay", endpoint=sim.endpoint("shop-epay"), kind="epay", pid="1001", key=KEY)
        e = Env(folder, sim, shop, paymon_clock(), client, io.StringIO())
        yield e
        e.close()


async def test_lost_orders_are_found_reported_and_replayed_once(env: Env) -> None:
    lost = [await env.order(pays=True) for _ in range(2)]
    unpaid = await env.order(pays=False)
    app = env.start(replay=True)
    assert app.reconciler is not None and list(app.reconciler.queriers) == ["shop-epay"]

    # paymon's clock is 6 min past the payments: the callback deadline (5 min) has passed when the answers are
    # stored, so the round that finds the orders paid also reports them lost and replays them
    asked, paid, errors, replayed = await env.round()
    assert (asked, paid, errors) == (3, sorted(o.order_id for o in lost), {})
    assert replayed == {o.order_id: True for o in lost}
    value = app.metrics.registry.get_sample_value
    assert value("paymon_reconcile_total", {"channel": "shop-epay", "result": "paid"}) == 2
    assert value("paymon_reconcile_total", {"channel": "shop-epay", "result": "unpaid"}) == 1
    assert sorted(lo.order_id for lo in ReconcileStore(app.store).lost_orders()) == sorted(o.order_id for o in lost)
    for o in lost:
        assert (env.shop.order(o.order_id).status, env.shop.order(o.order_id).trade_no) == (  # type: ignore[union-attr]
            "completed", o.trade_no)
    assert env.shop.order(unpaid.order_id).status == "wait_pay"  # type: ignore[union-attr]
    audit = ReconcileStore(app.store).replays()
    assert sorted((r.order_id, r.status_code, r.acknowledged) for r in audit) == sorted(
        (o.order_id, 200, True) for o in lost)
    assert all(KEY not in r.detail for r in audit)
    assert value("paymon_notify_replays_total", {"channel": "shop-epay", "result": "acknowledged"}) == 2
    assert (await env.round())[0] == 0          # nothing is due again a moment later

    # the cycle delivers the lost-order notifications, and (the shop's log now has the verified callbacks of the
    # replays) reports them recovered, once
    app.pipeline.cycle()
    # the round found both at once: one message lists them, by channel
    [found] = [line for line in env.lines() if line.startswith("🟠")]
    assert found.startswith("🟠 2 LOST ORDERS (paid at the channel, no verified callback within 5 min")
    assert " shop-epay (shop-epay) 2: " in found and all(f"{o.order_id} (" in found for o in lost)
    recovered = [line for line in env.lines() if line.startswith("✅ LOST ORDER RECOVERED")]
    assert sorted(line.split()[4] for line in recovered) == sorted(o.order_id for o in lost)
    app.pipeline.cycle()
    assert len([line for line in env.lines() if line.startswith("✅ LOST ORDER RECOVERED")]) == 2

    env.clock.advance(timedelta(minutes=6))
    asked, _, _, replayed = await env.round()
    assert (asked, replayed) == (1, {})         # the unpaid order had doubled its age: asked again; no replay

    env.start(replay=True)                      # a restart never replays twice
    env.clock.advance(timedelta(hours=1))
    assert (await env.round())[3] == {}
    assert len(ReconcileStore(env.app.store).replays()) == 2  # type: ignore[union-attr]


async def test_without_replay_lost_orders_are_only_reported(env: Env) -> None:
    lost = await env.order(pays=True)
    app = env.start(replay=False)
    await env.round()
    env.clock.advance(timedelta(minutes=6))
    app.pipeline.cycle()
    assert (await env.round())[3] == {}
    assert env.shop.order(lost.order_id).status == "wait_pay"  # type: ignore[union-attr]
    assert ReconcileStore(app.store).replays() == []
    assert [lo.order_id for lo in ReconcileStore(app.store).lost_orders(open_only=True)] == [lost.order_id]


async def test_a_failing_channel_is_left_alone_after_three_failures(env: Env) -> None:
    for _ in range(5):
        await env.order(pays=False)
    app = env.start(per_round=100)
    app.reconciler.queriers["shop-epay"].batch = 1  # type: ignore[union-attr]
    env.sim.faults("shop-epay").update(error_rate=1.0)
    asked, _, errors, _ = await env.round()
    assert asked == 0 and errors["shop-epay"].startswith("http_error")
    value = app.metrics.registry.get_sample_value
    assert value("paymon_reconcile_total", {"channel": "shop-epay", "result": "error"}) == MAX_FAILURES
    env.sim.faults("shop-epay").update(error_rate=0.0)
    asked, _, errors, _ = await env.round()    # the orders stayed due: all asked on the next round
    assert (asked, errors) == (5, {})


async def test_per_round_takes_the_newest_first(env: Env) -> None:
    orders = [await env.order(pays=False) for _ in range(3)]
    env.start(per_round=2)
    assert (await env.round())[0] == 2
    assert (await env.round())[0] == 1          # the oldest waited for the next round
    checks = ReconcileStore(env.app.store).candidates(  # type: ignore[union-attr]
        ["shop-epay"], now=env.clock.now() + timedelta(hours=1), older_than=timedelta(minutes=5),
        horizon=timedelta(hours=24), every=timedelta(minutes=1), per_channel=10)
    assert sorted(c.order_id for c in checks["shop-epay"]) == sorted(o.order_id for o in orders)


def test_channels_that_cannot_be_reconciled_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "var").mkdir(parents=True)
    (cfg_dir / "monitor.yaml").write_text(MONITOR.format(replay="true", per_round=10), encoding="utf-8")
    (cfg_dir / "channels.yaml").write_text(CHANNELS.format(endpoint="http://127.0.0.1:9/x/", key=KEY, notify=""),
                                           encoding="utf-8")
    cfg = load_config(cfg_dir / "monitor.yaml", env={})
    queriers, skipped = build_queriers(cfg.channels, QUERIERS)
    assert list(queriers) == ["shop-epay"]
    assert skipped == {"card": "stripe has no order query paymon can use"}
    broken = build_queriers(cfg.channels, {"epay": _Broken})
    assert broken[1]["shop-epay"] == "no credentials"
    with caplog.at_level(logging.INFO):
        app = build_app(cfg, clock=FixedClock(datetime(2026, 11, 26, tzinfo=UTC)), stream=io.StringIO())
    app.store.close()
    assert "channel card is not reconciled: stripe has no order query" in caplog.text
    assert "channel shop-epay has no notify_url" in caplog.text


class _Broken:
    def __init__(self, channel: object) -> None:
        raise ValueError("no credentials")


async def test_a_replay_waits_while_the_channel_cannot_confirm_and_never_goes_to_an_unpaid_order(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    lost = [await env.order(pays=True) for _ in range(2)]
    app = env.start(replay=False)
    await env.round()                                    # found and reported lost; replay is off
    assert len(ReconcileStore(app.store).lost_orders(open_only=True)) == 2
    app = env.start(replay=True)
    env.sim.faults("shop-epay").update(error_rate=1.0)   # the re-check before a replay fails: nothing is sent
    assert (await env.round())[3] == {}
    assert "cannot re-check the order" in caplog.text and ReconcileStore(app.store).replays() == []
    env.sim.faults("shop-epay").update(error_rate=0.0)
    assert lost[0].trade_no is not None
    reversed_at_channel = env.sim.gateway.channel("shop-epay").orders[lost[0].trade_no]
    reversed_at_channel.status = 0                       # the channel no longer says paid
    assert app.reconciler is not None
    ctx = {ch: ProbeContext(env.client, env.clock, app.cfg.redactor) for ch in app.reconciler.queriers}
    report = await app.reconciler.run(ctx)
    assert report.replayed == {lost[1].order_id: True}
    # refused, with the reason in words; counted as refused, not as a failed replay
    assert report.refused == {lost[0].order_id: "the channel now says unpaid (status 0)"}
    assert f"replay shop-epay/{lost[0].order_id} refused: the channel now says unpaid (status 0)" in caplog.text
    value = app.metrics.registry.get_sample_value
    assert value("paymon_notify_replays_total", {"channel": "shop-epay", "result": "refused"}) == 1
    assert value("paymon_notify_replays_total", {"channel": "shop-epay", "result": "failed"}) == 0  # never counted
    assert [r.order_id for r in ReconcileStore(app.store).replays()] == [lost[1].order_id]
    assert env.shop.order(lost[0].order_id).status == "wait_pay"  # type: ignore[union-attr]
    # still unpaid next round: asked again (it may yet turn paid) but counted and logged once, not every round
    caplog.clear()
    assert (await app.reconciler.run(ctx)).refused == {lost[0].order_id: "the channel now says unpaid (status 0)"}
    assert "refused" not in caplog.text
    assert value("paymon_notify_replays_total", {"channel": "shop-epay", "result": "refused"}) == 1
    # refunded is final: the refusal is audited as the order's one replay attempt and never asked about again
    reversed_at_channel.status = 2
    app = env.start(replay=True)                         # a restart forgets the in-memory once-only set
    assert app.reconciler is not None
    report = await app.reconciler.run(ctx)
    why = "the channel says the payment was refunded (status 2): the buyer has the money back"
    assert report.refused == {lost[0].order_id: why}
    [audit] = [r for r in ReconcileStore(app.store).replays() if r.order_id == lost[0].order_id]
    assert (audit.status_code, audit.acknowledged, audit.detail) == (None, False, f"refused: {why}")
    assert (await app.reconciler.run(ctx)).refused == {}
    value = app.metrics.registry.get_sample_value
    assert value("paymon_notify_replays_total", {"channel": "shop-epay", "result": "refused"}) == 1
    assert env.shop.order(lost[0].order_id).status == "wait_pay"  # type: ignore[union-attr]


async def test_a_querier_that_crashes_costs_its_channel_only(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    await env.order(pays=False)
    app = env.start()
    assert app.reconciler is not None

    class Broken:
        kind, batch = "epay", 10

        async def lookup(self, order_ids: object, ctx: object) -> dict[str, object]:
            raise RuntimeError("a bug")

    app.reconciler.queriers["shop-epay"] = Broken()  # type: ignore[assignment]
    asked, _, errors, _ = await env.round()
    assert (asked, errors) == (0, {"shop-epay": "querier error: RuntimeError"})
    assert "reconcile shop-epay crashed" in caplog.text


async def test_a_loss_reported_by_the_cycle_after_the_round_is_replayed_in_the_same_run(env: Env) -> None:
    [lost] = [await env.order(pays=True)]
    assert lost.trade_no is not None
    paid_at = env.sim.gateway.channel("shop-epay").orders[lost.trade_no].paid_at
    assert paid_at is not None
    app = env.start(replay=True)
    assert app.reconciler is not None
    # the round asks (the order is exactly older_than, 5 min, old) but the callback deadline, from the end of
    # the whole-second pay time after the creation, has not passed yet: nothing is lost when the round reports
    app.pipeline.ingest()
    o = t.orders
    with app.store.engine.connect() as conn:    # the creation time paymon read from the shop's log
        created = conn.execute(select(o.c.created_at).where(o.c.order_id == lost.order_id)).scalar_one()
    env.clock.set(utc(created) + timedelta(minutes=5))
    ctx = {ch: ProbeContext(env.client, env.clock, app.cfg.redactor) for ch in app.reconciler.queriers}
    report = await app.reconciler.run(ctx)
    assert (report.paid, report.reported.found, report.replayed) == ([lost.order_id], [], {})
    # the deadline passes before the cycle's own report
    env.clock.set(paid_at.replace(microsecond=0) + timedelta(minutes=5, seconds=1))
    assert [lo.order_id for lo in app.pipeline.cycle().lost] == [lost.order_id]
    await app.reconciler.replay(ctx, report)              # what `paymon once` does after such a cycle
    assert report.replayed == {lost.order_id: True}
    assert env.shop.order(lost.order_id).status == "completed"  # type: ignore[union-attr]
