"""``paymon demo``: the whole loop on loopback, narrated.

It starts the epay simulator with two channels and a shop sending orders through them (the shop picks channels
by the weights in ``channels.yaml``, as a real shop reads its routing config), writes temporary configs, and runs
the real daemon on them: scheduled probes, the JSONL ingester, rules, the console sink and the YAML weight sink.
Then it breaks ``epay-main`` (every request answers HTTP 500), mends it, and prints what paymon saw and did,
with timings. It ends by itself when the weight is fully restored, or after ``duration`` seconds.
Exit 0 when the whole story happened (alert, drain, resolve, restore), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.http import HttpServer
from monitor.models import ProbeResult
from monitor.pipeline import CycleReport
from monitor.sim.server import SimServer
from monitor.sim.shop import Shop, ShopTraffic
from monitor.status import status_view

__all__ = ["DemoTimeline", "run_demo"]

MAIN, BACKUP = "epay-main", "epay-backup"
KEYS = {MAIN: "demo-epay-main-md5-key-0001", BACKUP: "demo-epay-backup-md5-key-0002"}

MONITOR_YAML = """\
# paymon demo settings (a temporary copy; timings are shortened so the story fits in a minute)
storage: {{url: "sqlite:///var/paymon.db"}}
http: {{listen: "127.0.0.1:0"}}
defaults: {{pay_timeout: 20s, callback_deadline: 10s, min_orders: 10, windows: [1m, 5m, 15m]}}
sources:
  - {{kind: jsonl, path: var/shop/orders.jsonl, timezone: Asia/Shanghai}}
rules:
  - name: channel_down
    signal: probe_failures_in_a_row
    probe: query
    op: ">="
    threshold: 3
    severity: critical
    actions: [notify, drain]
  - name: low_success
    signal: success_ratio
    window: 1m
    op: "<"
    threshold: 0.5
    recover: 0.7
    min_orders: 10
    for: 10s
    severity: warning
    actions: [notify, {{reduce_weight: 0.5}}]
notify: {{language: {language}, console: true}}
routing:
  mode: auto
  sink: {{kind: yaml, path: channels.yaml}}
  restore: {{steps: [0.25, 0.5, 1.0], every: 4s, healthy_for: 6s}}
"""

CHANNELS_YAML = """\
# The shop reads `weight` from this file; paymon rewrites only those values.
channels:
  - id: epay-main                # the primary epay aggregator
    name: 易支付主通道
    kind: epay
    tier: primary
    methods: [alipay, wxpay]
    weight: 60                   # routing weight
    endpoint: "{main}"
    credentials: {{pid: "1001", key: "${{DEMO_EPAY_MAIN_KEY}}"}}
    probes:
      query: {{every: 2s, timeout: 1s}}

  - id: epay-backup              # the backup aggregator
    name: 易支付备用通道
    kind: epay
    tier: backup
    methods: [alipay, wxpay]
    weight: 40
    endpoint: "{backup}"
    credentials: {{pid: "1002", key: "${{DEMO_EPAY_BACKUP_KEY}}"}}
    probes:
      query: {{every: 2s, timeout: 1s}}
"""


@dataclass
class DemoTimeline:
    """Moments of the story, in seconds since the demo started."""

    fault_at: float | None = None
    fired_at: float | None = None
    drained_at: float | None = None
    mended_at: float | None = None
    resolved_at: float | None = None
    restore_steps: list[tuple[float, int]] = field(default_factory=list)
    restored_at: float | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.fired_at, self.drained_at, self.resolved_at, self.restored_at)


class Narrator:
    """Prints what happens, with the time since the start, and fills the timeline."""

    def __init__(self, out: TextIO, channels_file: Path, start: float) -> None:
        self.out = out
        self.channels_file = channels_file
        self.start = start
        self.timeline = DemoTimeline()
        self.last_outcome: dict[str, str] = {}

    def t(self) -> float:
        return time.monotonic() - self.start

    def say(self, text: str) -> None:
        print(f"[t+{self.t():5.1f}s] {text}", file=self.out, flush=True)

    def _weight_line(self, channel: str) -> str:
        lines = self.channels_file.read_text(encoding="utf-8").splitlines()
        inside = False
        for n, line in enumerate(lines, 1):
            if line.strip().startswith("- id:"):
                inside = line.split("id:", 1)[1].split("#")[0].strip() == channel
            if inside and line.strip().startswith("weight:"):
                return f"channels.yaml:{n}: {line.strip()}"
        return "channels.yaml: (weight line not found)"

    def on_probe(self, r: ProbeResult) -> None:
        before = self.last_outcome.get(r.channel)
        self.last_outcome[r.channel] = r.outcome
        if before is not None and before != r.outcome:
            self.say(f"probe {r.channel}/{r.probe}: {before} → {r.outcome} ({r.detail})")

    def on_cycle(self, report: CycleReport) -> None:
        tl = self.timeline
        for e in report.events:
            if e.channel != MAIN:
                self.say(f"alert {e.kind}: {e.rule} on {e.channel}")
                continue
            if e.kind == "firing" and tl.fired_at is None and tl.fault_at is not None:
                tl.fired_at = self.t()
                self.say(f"ALERT {e.rule} fired on {e.channel}, {tl.fired_at - tl.fault_at:.1f}s after the fault "
                         f"({e.summary})")
            elif e.kind == "resolved" and tl.mended_at is not None and tl.resolved_at is None:
                tl.resolved_at = self.t()
                self.say(f"RESOLVED {e.rule} on {e.channel}, {tl.resolved_at - tl.mended_at:.1f}s after the repair")
            else:
                self.say(f"alert {e.kind}: {e.rule} on {e.channel} ({e.summary})")
        for c in report.changes:
            self.say(f"WEIGHT {c.channel} {c.old} → {c.new} ({c.reason}); now {self._weight_line(c.channel)}")
            if c.channel != MAIN:
                continue
            if c.new == 0 and tl.drained_at is None:
                tl.drained_at = self.t()
            elif c.new > c.old and tl.drained_at is not None:
                tl.restore_steps.append((self.t(), c.new))
                if c.new >= 60:
                    tl.restored_at = self.t()
        for msg in report.held:
            self.say(f"held: {msg}")


def _ratio(report: CycleReport | None, channel: str) -> str:
    if report is None:
        return "-"
    s = report.stats.get((channel, "1m"))
    if s is None or s.decided == 0:
        return "-"
    return f"{s.succeeded / s.decided * 100:.0f}% of {s.decided}"


async def _scenario(folder: Path, duration: float, language: str, out: TextIO) -> DemoTimeline:
    rng = random.Random(20261126)
    async with SimServer(rng=random.Random(7)) as sim:
        sim.add_channel(MAIN, pid="1001", key=KEYS[MAIN])
        sim.add_channel(BACKUP, pid="1002", key=KEYS[BACKUP])
        sim.faults(MAIN).update(pay_probability=0.95, callback_delay_s=0.3)
        sim.faults(BACKUP).update(pay_probability=0.95, callback_delay_s=0.5)
        cfg_dir = folder / "config"
        cfg_dir.mkdir(parents=True)
        (cfg_dir / "monitor.yaml").write_text(MONITOR_YAML.format(language=language), encoding="utf-8")
        channels_file = cfg_dir / "channels.yaml"
        channels_file.write_text(CHANNELS_YAML.format(main=sim.endpoint(MAIN), backup=sim.endpoint(BACKUP)),
                                 encoding="utf-8")
        # The keys reach the config the way production secrets do: through ${VAR} expansion.
        cfg = load_config(cfg_dir / "monitor.yaml",
                          env={"DEMO_EPAY_MAIN_KEY": KEYS[MAIN], "DEMO_EPAY_BACKUP_KEY": KEYS[BACKUP]})
        from monitor.cli import build_app

        app = build_app(cfg, stream=out)
        assert app.weights is not None
        log_path = cfg.monitor.sources[0].path  # type: ignore[union-attr]
        start = time.monotonic()
        narrator = Narrator(out, channels_file, start)
        print(f"paymon demo: simulator {sim.base_url}, configs and data in {folder}", file=out)
        print("shop traffic: about 4 orders/s, split by the weights in channels.yaml (60 / 40)\n", file=out)
        async with Shop(log_path, expire_after=20.0, rng=random.Random(11)) as shop:
            traffic = ShopTraffic(shop, sim, {MAIN: 60, BACKUP: 40}, rate_per_s=4.0, rng=rng)
            async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics, cycle_every=1.0,
                              on_cycle=narrator.on_cycle, on_probe=narrator.on_probe) as daemon:
                http = HttpServer("127.0.0.1", 0, registry=app.metrics.registry, health=daemon.health,
                                  status=lambda: status_view(cfg, app.store, app.clock.now(),
                                                             app.weights.read() if app.weights else {})).start()
                narrator.say(f"paymon is running; metrics on http://127.0.0.1:{http.port}/metrics")
                daemon.start()
                await traffic.start()
                last_report: CycleReport | None = None

                def keep(report: CycleReport) -> None:
                    nonlocal last_report
                    last_report = report
                    narrator.on_cycle(report)

                daemon.on_cycle = keep
                tl = narrator.timeline
                next_status = 10.0
                try:
                    while narrator.t() < duration:
                        await asyncio.sleep(0.2)
                        now = narrator.t()
                        traffic.weights = {k: float(v) for k, v in app.weights.read().items()}
                        if tl.fault_at is None and now >= 15.0:
                            sim.faults(MAIN).update(error_rate=1.0)
                            tl.fault_at = now
                            narrator.say("FAULT: epay-main now answers every request with HTTP 500")
                        if tl.mended_at is None and tl.drained_at is not None and now >= tl.drained_at + 12.0:
                            sim.faults(MAIN).update(error_rate=0.0)
                            tl.mended_at = now
                            narrator.say("REPAIR: epay-main answers normally again")
                        if now >= next_status:
                            next_status += 10.0
                            weights = app.weights.read()
                            narrator.say(
                                "status: " + " | ".join(
                                    f"{ch} {last_report.states.get(ch, '?') if last_report else '?'}, "
                                    f"weight {weights.get(ch)}, success(1m) {_ratio(last_report, ch)}"
                                    for ch in (MAIN, BACKUP)))
                        if tl.restored_at is not None and now >= tl.restored_at + 2.0:
                            break
                finally:
                    await traffic.stop()
                    http.stop()
        print(f"\nshop: {traffic.created} orders created, {traffic.opened} opened at the gateway, "
              f"{traffic.paid} paid", file=out)
        app.pipeline.close()
        app.store.close()
        return narrator.timeline


def _summary(tl: DemoTimeline, out: TextIO) -> None:
    def at(v: float | None) -> str:
        return "did not happen" if v is None else f"t+{v:.1f}s"

    print("\nWhat paymon saw and did", file=out)
    print(f"  fault injected on epay-main:        {at(tl.fault_at)}", file=out)
    fired = "" if tl.fired_at is None or tl.fault_at is None else f" ({tl.fired_at - tl.fault_at:.1f}s after it)"
    print(f"  alert channel_down fired:           {at(tl.fired_at)}{fired}", file=out)
    print(f"  weight 60 → 0 in channels.yaml:     {at(tl.drained_at)}", file=out)
    print(f"  channel repaired:                   {at(tl.mended_at)}", file=out)
    res = "" if tl.resolved_at is None or tl.mended_at is None else f" ({tl.resolved_at - tl.mended_at:.1f}s after it)"
    print(f"  alert resolved:                     {at(tl.resolved_at)}{res}", file=out)
    steps = " → ".join(["0", *(str(w) for _, w in tl.restore_steps)])
    print(f"  weight restored step by step:       {steps} (done {at(tl.restored_at)})", file=out)
    print("  result: " + ("the whole story happened" if tl.complete else "INCOMPLETE, see above"), file=out)


def run_demo(*, duration: float = 75.0, keep: bool = False, language: str = "en", out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (0 when alert, drain, resolve and restore all happened)."""
    out = out if out is not None else sys.stdout
    folder = Path(tempfile.mkdtemp(prefix="paymon-demo-"))
    try:
        timeline = asyncio.run(_scenario(folder, duration, language, out))
    finally:
        if keep:
            print(f"\nkept {folder}", file=out)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    _summary(timeline, out)
    return 0 if timeline.complete else 1
