"""Issue 11 acceptance, end to end on the shipped rules (config/monitor.yaml): simulated gateways over real HTTP,
the daemon's probe jobs run when its scheduler would run them, the evaluation cycle after each, all on a fixed
clock (simulated time, no waiting).

- a wrong epay V2 platform key makes the query probe say ``bad_signature`` within one probe interval after a test
  order exists, and ``channel_down`` fires;
- a banned merchant (the simulator's ``merchant_banned`` knob) makes the channel ``down`` with the reason "merchant
  banned at the gateway" (商户已被通道封禁) within the shipped rule's ``for``, in the notification, ``paymon status``
  and ``/api/status``, and the routing stage drains it.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.cli import App, build_app, main
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.daemon import Daemon, ProbeJob
from monitor.models import MERCHANT_BANNED, ProbeResult
from monitor.protocols.epay_v2 import base64_from_pem, private_key_pem, public_key_pem
from monitor.sim import SimServer
from monitor.sim.epay_v2 import EpayV2Gateway
from monitor.status import status_view


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Run:
    """The shipped monitor.yaml with our channels.yaml, the app and daemon built on it, and a record of what the
    probes returned and the cycles printed."""

    folder: Path
    clock: FixedClock
    app: App
    daemon: Daemon
    out: io.StringIO
    results: list[ProbeResult]
    lines: list[str]
    #: When each (channel, probe) job runs next; empty until the first ``until``.
    due: dict[tuple[str, str], datetime]

    async def until(self, end: datetime) -> None:
        """Run every probe job when the scheduler would (first at the start, then every interval; jitter left
        out) and an evaluation cycle after each moment, up to ``end``."""
        if not self.due:
            self.due.update({(j.channel, j.probe): self.clock.now() for j in self.daemon.jobs})
        due = self.due
        jobs: dict[tuple[str, str], ProbeJob] = {(j.channel, j.probe): j for j in self.daemon.jobs}
        while min(due.values()) <= end:
            self.clock.set(min(due.values()))
            for key, job in jobs.items():
                if due[key] == self.clock.now():
                    self.results.append(await self.daemon.probe_once(job))
                    due[key] += job.every
            before = len(self.out.getvalue().splitlines())
            await asyncio.to_thread(self.app.pipeline.cycle)
            self.lines += [f"{self.clock.now():%H:%M:%S} {line.split(' ', 3)[3]}"
                           for line in self.out.getvalue().splitlines()[before:]]

    def weight(self, channel: str) -> int:
        assert self.app.weights is not None
        return self.app.weights.read()[channel]  # the file the shipped sink writes (the operator's copy)


@pytest.fixture
async def sim(clock: FixedClock) -> AsyncIterator[SimServer]:
    async with SimServer(clock=clock) as server:
        yield server


async def shipped_run(config_dir: Path, clock: FixedClock, channels: list[dict[str, Any]]) -> Run:
    (config_dir / "channels.yaml").write_text(yaml.safe_dump({"channels": channels}, allow_unicode=True),
                                              encoding="utf-8")
    cfg = load_config(config_dir / "monitor.yaml", env={})
    out = io.StringIO()
    app = build_app(cfg, clock=clock, stream=out)
    return Run(config_dir, clock, app, Daemon(cfg, app.pipeline, app.store, clock=clock, metrics=app.metrics),
               out, [], [], {})


def epay_channel(sim: SimServer, cid: str) -> dict[str, Any]:
    sim.add_channel(cid, 1001, f"{cid}-md5-key-0123456789")
    return {"id": cid, "kind": "epay", "methods": ["alipay"], "weight": 50, "endpoint": sim.endpoint(cid),
            "credentials": {"pid": "1001", "key": f"{cid}-md5-key-0123456789"},
            "probes": {"query": {"every": "30s", "timeout": "5s"},
                       "test_order": {"every": "5m", "amount": "0.01"}, "balance": {"every": "10m"}}}


def v2_channel(sim: SimServer, gateway: EpayV2Gateway, cid: str, *, platform: str | None = None) -> dict[str, Any]:
    gateway.add_channel(cid, pid=1001, merchant_public_key=public_key_pem(rsa_key("merchant")))
    sim.register(cid, gateway)
    return {"id": cid, "kind": "epay_v2", "methods": ["alipay"], "weight": 50, "endpoint": sim.endpoint(cid),
            "credentials": {"pid": "1001", "private_key": base64_from_pem(private_key_pem(rsa_key("merchant"))),
                            "platform_public_key": platform or gateway.platform_public_key_pem(cid)},
            "probes": {"query": {"every": "30s", "timeout": "5s"},
                       "test_order": {"every": "5m", "amount": "0.01"}, "balance": {"every": "10m"}}}


async def test_wrong_v2_platform_key_is_bad_signature_from_query_and_the_channel_goes_down(
        sim: SimServer, clock: FixedClock, config_dir: Path) -> None:
    gateway = EpayV2Gateway(clock=clock)
    wrong = public_key_pem(rsa_key("someone else"))
    channels = [v2_channel(sim, gateway, "v2-main", platform=wrong), v2_channel(sim, gateway, "v2-backup")]
    run = await shipped_run(config_dir, clock, channels)
    start = clock.now()
    try:
        async with run.daemon:
            await run.until(start + timedelta(minutes=2))
    finally:
        run.app.pipeline.close()
        run.app.store.close()
    mine = [r for r in run.results if r.channel == "v2-main"]
    created = next(r for r in mine if r.probe == "test_order")
    assert created.outcome == "bad_signature"
    (made,) = [t for t in sim.ground_truth() if t.channel == "v2-main"]  # the gateway made the order anyway
    assert f"test order {made.out_trade_no} may exist" in created.detail
    queries = [r for r in mine if r.probe == "query" and r.started_at <= created.started_at + timedelta(seconds=30)]
    assert queries and all(r.outcome == "bad_signature" for r in queries), [r.detail for r in queries]
    assert all(r.outcome == "ok" for r in run.results if r.channel == "v2-backup" and r.probe == "query")
    firing = [line for line in run.lines if "channel_down" in line and "🔴" in line]
    assert firing == ["03:01:00 🔴 告警 [critical] v2-main (v2-main) · channel_down: 探测连续失败次数 = 3 (阈值 3); "
                      "最近 3 次探测 (新→旧): 验签失败 (api/merchant/info: reply signature does not verify with the "
                      "platform key) ×3"]
    assert run.weight("v2-main") == 0 and run.weight("v2-backup") == 50


@pytest.mark.parametrize("kind", ["epay", "epay_v2"])
async def test_a_banned_merchant_is_down_with_the_reason_and_drained(
        sim: SimServer, clock: FixedClock, config_dir: Path, kind: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "epay":
        channels = [epay_channel(sim, "main"), epay_channel(sim, "backup")]
    else:
        gateway = EpayV2Gateway(clock=clock)
        channels = [v2_channel(sim, gateway, "main"), v2_channel(sim, gateway, "backup")]
    run = await shipped_run(config_dir, clock, channels)
    start = clock.now()
    try:
        async with run.daemon:
            await run.until(start + timedelta(minutes=1))  # healthy first: a test order exists
            assert run.lines == []
            sim.faults("main").update(merchant_banned=True)
            banned_at = min(run.due.values())  # the next probe run sees the ban
            await run.until(start + timedelta(minutes=4))
            view = status_view(run.app.cfg, run.app.store, clock.now(), {c: run.weight(c) for c in ("main", "backup")})
    finally:
        run.app.pipeline.close()
        run.app.store.close()

    # The merchant's standing is what the probes say once banned; order queries still answer.
    after = [r for r in run.results if r.channel == "main" and r.started_at >= banned_at]
    assert {(r.probe, r.outcome, r.code) for r in after} >= {("query", "business_error", MERCHANT_BANNED)}
    assert all(r.code == MERCHANT_BANNED for r in after), [r.detail for r in after]
    assert all("merchant banned at the gateway" in r.detail for r in after)

    # Firing one shipped-rule `for` (1m) after the first banned answer; channel_down, inhibited, stays quiet.
    fired = banned_at + timedelta(minutes=1)
    assert run.lines == [
        f"{fired:%H:%M:%S} 🔴 告警 [critical] main (main) · merchant_banned: 商户已被通道封禁",
        f"{fired:%H:%M:%S} ⚖️ 权重 main (main): 50 → 0 (规则 merchant_banned: 摘除 (权重归零))",
    ]
    assert run.weight("main") == 0 and run.weight("backup") == 50
    main_view = next(c for c in view["channels"] if c["id"] == "main")
    assert (main_view["state"], main_view["weight"]) == ("down", 0)
    assert main_view["reasons"][0] == "商户已被通道封禁"
    assert next(c for c in view["channels"] if c["id"] == "backup")["reasons"] == []
    banned = [a for a in view["firing"] if a["rule"] == "merchant_banned"]
    assert [(a["channel"], a["reason"]) for a in banned] == [("main", "商户已被通道封禁")]

    # `paymon status` (the CLI reads the same store) names the reason too.
    capsys.readouterr()
    assert main(["status", "-c", str(config_dir / "monitor.yaml")]) == 3  # a channel is down
    printed = capsys.readouterr().out
    assert "merchant_banned@main (商户已被通道封禁)" in printed
    assert not any(line.split()[:2] == ["backup", "down"] for line in printed.splitlines())


async def test_the_merchant_unbanned_resolves_and_says_so(sim: SimServer, clock: FixedClock,
                                                          config_dir: Path) -> None:
    channels = [epay_channel(sim, "main"), epay_channel(sim, "backup")]
    run = await shipped_run(config_dir, clock, channels)
    start = clock.now()
    sim.faults("main").update(merchant_banned=True)
    try:
        async with run.daemon:
            await run.until(start + timedelta(minutes=2))
            sim.faults("main").update(merchant_banned=False)
            await run.until(start + timedelta(minutes=3))
    finally:
        run.app.pipeline.close()
        run.app.store.close()
    said = [line.split(" ", 1)[1] for line in run.lines if "merchant_banned" in line]
    assert said == ["🔴 告警 [critical] main (main) · merchant_banned: 商户已被通道封禁",
                    "⚖️ 权重 main (main): 50 → 0 (规则 merchant_banned: 摘除 (权重归零))",
                    "✅ 已恢复 [critical] main (main) · merchant_banned: 通道不再显示商户被封禁"]
