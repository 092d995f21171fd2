"""``paymon once`` under a simulated cron, with the simulator as gateway and shop over real HTTP: a lost order on an
epay V1 channel with ``replay_notify`` is reported and replayed in the same run (not one cron period later), each
once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from monitor.cli import main
from monitor.sim import Faults, Shop
from tests.conftest import PATIENCE_S, SimThread

KEY = "once-cron-test-key-0123"
T = TypeVar("T")

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
defaults: {callback_deadline: 1s}
sources: [{kind: jsonl, path: var/orders.jsonl, timezone: UTC}]
reconcile: {every: 1s, older_than: 1s, horizon: 1h, replay_notify: true, rate: 1000}
notify: {language: en}
routing: {mode: off}
"""
CHANNELS = """\
channels:
  - id: shop-epay
    kind: epay
    weight: 10
    endpoint: "{endpoint}"
    notify_url: "{notify_url}"
    credentials: {{pid: "1001", key: "{key}"}}
"""


def test_once_under_cron_reports_and_replays_a_lost_order_in_the_same_run(
        tmp_path: Path, sim_thread: SimThread, capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_thread.server

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, sim_thread.loop).result(PATIENCE_S)

    sim_thread.call(sim.add_channel, "shop-epay", pid="1001", key=KEY,
                    faults=Faults(pay_probability=1.0, callback_drop_rate=1.0))
    folder = tmp_path / "cfg"
    (folder / "var").mkdir(parents=True)
    shop = Shop(folder / "var" / "orders.jsonl")
    run(shop.__aenter__())
    try:
        sim_thread.call(shop.add_channel, "shop-epay", endpoint=sim.endpoint("shop-epay"), kind="epay", pid="1001",
                        key=KEY)
        (folder / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
        (folder / "channels.yaml").write_text(CHANNELS.format(endpoint=sim.endpoint("shop-epay"),
                                                              notify_url=shop.notify_url, key=KEY), encoding="utf-8")
        order = run(shop.place_order("shop-epay", "alipay", "10.00"))
        assert order.trade_no is not None
        assert sim_thread.call(sim.gateway.buyer_visits, "shop-epay", order.trade_no)  # its notify is dropped

        outputs: list[str] = []
        for _ in range(6):                  # cron ticks, each a separate `paymon once`
            time.sleep(1.1)                 # the order ages past older_than, its pay time past the 1 s deadline
            assert main(["once", "-c", str(folder / "monitor.yaml")]) == 0
            outputs.append(capsys.readouterr().out)
            if any("lost orders: 1 new" in out for out in outputs):
                break
        assert main(["once", "-c", str(folder / "monitor.yaml")]) == 0   # one more tick: nothing twice
        outputs.append(capsys.readouterr().out)
        status = sim_thread.call(lambda: shop.order(order.order_id).status)  # type: ignore[union-attr]
    finally:
        run(shop.__aexit__(None, None, None))

    reporting = [out for out in outputs if "lost orders: 1 new" in out]
    assert len(reporting) == 1, outputs            # reported once ...
    [out] = reporting
    assert "replayed: 1," in out                   # ... and replayed in that same run
    assert f"LOST ORDER {order.order_id} · shop-epay (shop-epay) · 10.00 · paid at the channel" in out
    assert all("replayed: 0," in other for other in outputs if other is not out)
    assert status == "completed"                   # the shop completed the order from the replayed notify
    db = sqlite3.connect(folder / "var" / "paymon.db")
    try:
        replays = db.execute("SELECT order_id, status_code, acknowledged FROM notify_replays").fetchall()
        lost = db.execute("SELECT order_id FROM lost_orders").fetchall()
    finally:
        db.close()
    assert replays == [(order.order_id, 200, 1)] and lost == [(order.order_id,)]
