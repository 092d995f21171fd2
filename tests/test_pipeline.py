"""One thin slice end to end on a fixed clock: probe results and order events → rules → alerts → weights.

Uses the real store (SQLite), the real JSONL source, the real YAML weight sink and the console sink on a
StringIO; only time is fixed so each step is exact.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli import App, build_app
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.metrics.prom import Metrics
from monitor.models import ProbeResult
from monitor.routing.yaml_file import YamlWeightSink
from monitor.status import status_view

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
defaults: {pay_timeout: 15m, callback_deadline: 5m, min_orders: 5, windows: [15m, 1h]}
sources: [{kind: jsonl, path: var/orders.jsonl, timezone: UTC}]
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, severity: critical,
     actions: [notify, drain]}
  - {name: low_success, signal: success_ratio, window: 15m, op: "<", threshold: 0.8, recover: 0.9,
     min_orders: 5, for: 2m, actions: [notify, {reduce_weight: 0.5}]}
notify: {language: en}
routing:
  sink: {kind: yaml, path: channels.yaml}
  restore: {steps: [0.25, 0.5, 1.0], every: 5m, healthy_for: 10m}
"""
CHANNELS = """\
channels:
  - id: main     # primary
    kind: epay
    methods: [alipay]
    weight: 60   # routed by the shop
    endpoint: http://127.0.0.1:9/main/
    credentials: {pid: "1001", key: "main-key-123456"}
  - id: backup
    kind: epay
    methods: [alipay]
    weight: 40
    endpoint: http://127.0.0.1:9/backup/
    credentials: {pid: "1002", key: "backup-key-123456"}
"""


class Rig:
    def __init__(self, folder: Path, clock: FixedClock) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
        (folder / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
        self.folder = folder
        self.clock = clock
        self.out = io.StringIO()
        self.app = self.start()

    def start(self) -> App:
        return self.start_with(Metrics())

    def start_with(self, metrics: Metrics) -> App:
        cfg = load_config(self.folder / "monitor.yaml", env={})
        return build_app(cfg, clock=self.clock, stream=self.out, metrics=metrics)

    def restart(self) -> None:
        self.app.pipeline.close()
        self.app.store.close()
        self.app = self.start()

    def probes(self, channel: str, *outcomes: str) -> None:
        for o in outcomes:
            self.clock.advance(1)
            self.app.store.add_probe_results([ProbeResult(channel, "query", o, 0.1, self.clock.now())])

    def events(self, *records: dict[str, object]) -> None:
        with (self.folder / "var" / "orders.jsonl").open("a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps({"ts": self.clock.now().isoformat(), **r}) + "\n")

    def cycle(self) -> list[str]:
        """Run a cycle; return the notification lines it printed."""
        before = len(self.out.getvalue().splitlines())
        self.app.pipeline.cycle()
        return [line.split(" ", 3)[3] for line in self.out.getvalue().splitlines()[before:]]

    def weight(self, channel: str) -> int:
        return YamlWeightSink(self.folder / "channels.yaml").read()[channel]



def test_down_drain_restart_resolve_restore(rig: Rig) -> None:
    rig.probes("main", "ok", "ok")
    rig.probes("backup", "ok")
    assert rig.cycle() == []
    rig.probes("main", "timeout", "http_error")
    assert rig.cycle() == []  # two in a row: not yet
    rig.probes("main", "timeout")
    assert rig.cycle() == [
        "🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 3 (threshold 3); last 3 probes "
        "(newest first): timeout; HTTP error; timeout",
        "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)",
    ]
    assert rig.weight("main") == 0
    assert (rig.folder / "channels.yaml").read_text(encoding="utf-8") == CHANNELS.replace(
        "weight: 60   # routed", "weight: 0    # routed")
    rig.probes("main", "timeout")
    assert rig.cycle() == []

    rig.restart()  # a restart neither re-pages nor forgets the alert
    assert rig.cycle() == []
    view = status_view(rig.app.cfg, rig.app.store, rig.clock.now(), {"main": 0, "backup": 40})
    assert [(c["id"], c["state"], c["weight"]) for c in view["channels"]] == [("main", "down", 0),
                                                                               ("backup", "healthy", 40)]
    assert [a["rule"] for a in view["firing"]] == ["channel_down"]

    rig.probes("main", "ok")
    assert rig.cycle() == ["✅ RESOLVED [critical] main (main) · channel_down: probe_failures_in_a_row = 0 "
                           "(threshold 3)"]
    restored = []
    for _ in range(25):
        rig.clock.advance(timedelta(minutes=1))
        restored += rig.cycle()
    assert restored == [
        "⚖️ weight main (main): 0 → 15 (restore step 1/3)",
        "⚖️ weight main (main): 15 → 30 (restore step 2/3)",
        "⚖️ weight main (main): 30 → 60 (restore step 3/3)",
    ]
    assert rig.weight("main") == 60
    history = rig.app.store.weight_history()
    assert [(w.old, w.new, w.actor) for w in reversed(history)] == [(60, 0, "paymon"), (0, 15, "paymon"),
                                                                      (15, 30, "paymon"), (30, 60, "paymon")]


def test_low_success_ratio_reduces_weight_after_for(rig: Rig) -> None:
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    for i in range(10):
        rig.events({"event": "order_created", "order_id": f"O{i}", "channel": "main", "amount": "10.00"})
    rig.clock.advance(timedelta(minutes=4))
    for i in range(3):
        rig.events({"event": "callback_received", "order_id": f"O{i}", "channel": "main", "verified": True})
    rig.clock.advance(timedelta(minutes=12))  # the 7 unpaid orders fail at their 15 min pay timeout
    assert rig.cycle() == []                  # 30 % < 80 %: pending for 2 minutes first
    rig.clock.advance(timedelta(minutes=2))
    assert rig.cycle() == [
        "🔴 FIRING [warning] main (main) · low_success: success_ratio = 30.0% (threshold 80.0%)",
        "⚖️ weight main (main): 60 → 30 (rule low_success: reduce to 0.5× baseline)",
    ]
    counts = rig.app.metrics.registry.get_sample_value(
        "paymon_ingest_events_total", {"source": rig.app.cfg.monitor.sources[0].label, "result": "accepted"})
    assert counts == 13
    ratio = rig.app.metrics.registry.get_sample_value("paymon_success_ratio", {"channel": "main", "window": "15m"})
    assert ratio == pytest.approx(0.3)


def test_silenced_alerts_are_recorded_but_not_sent(rig: Rig) -> None:
    rig.app.store.add_silence("main", rig.clock.now() + timedelta(hours=1), reason="planned work")
    rig.probes("main", "timeout", "timeout", "timeout")
    assert rig.cycle() == ["⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"]
    assert [h["kind"] for h in rig.app.store.alert_history()] == ["firing"]


def test_operator_edit_is_respected(rig: Rig) -> None:
    rig.probes("main", "timeout", "timeout", "timeout")
    rig.cycle()
    path = rig.folder / "channels.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("weight: 0 ", "weight: 25"), encoding="utf-8")
    assert rig.cycle() == ["⚖️ weight main (main): 0 → 25 (edited in the shared config)"]
    assert rig.weight("main") == 25
    assert rig.app.store.weight_history()[0].actor == "operator"
    rig.probes("main", "timeout")
    assert rig.cycle() == [] and rig.weight("main") == 25  # still firing, but the operator decided
    rig.probes("main", "ok")
    assert rig.cycle()[0].startswith("✅ RESOLVED")
    assert rig.weight("main") == 25
    rig.probes("main", "timeout", "timeout", "timeout")  # a new episode drains again
    assert rig.cycle()[1] == "⚖️ weight main (main): 25 → 0 (rule channel_down: drain)"


def test_never_drains_the_last_channel_of_a_method(rig: Rig) -> None:
    rig.probes("main", "timeout", "timeout", "timeout")
    rig.probes("backup", "timeout", "timeout", "timeout")
    lines = rig.cycle()
    assert sum("→ 0" in line for line in lines) == 1
    assert sorted([rig.weight("main"), rig.weight("backup")]) == [0, 40]


def test_retention_and_suggest_mode(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.probes("main", "ok")
    rig.clock.advance(timedelta(days=15))
    rig.probes("main", "ok")
    assert rig.app.pipeline.prune() == (1, 0)  # probes are kept 14 days by default

    path = rig.folder / "monitor.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("routing:\n", "routing:\n  mode: suggest\n"),
                    encoding="utf-8")
    rig.restart()
    rig.probes("main", "timeout", "timeout", "timeout")
    with caplog.at_level("INFO"):
        lines = rig.cycle()
        rig.cycle()
    assert lines == ["🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 3 (threshold 3); "
                     "last 3 probes (newest first): timeout ×3"]
    assert rig.weight("main") == 60
    assert caplog.text.count("routing suggestion (mode: suggest, nothing written): main 60 -> 0") == 1


def test_windowed_probe_rule_reads_probe_history(tmp_path: Path, clock: FixedClock) -> None:
    folder = tmp_path / "cfg"
    (folder / "var").mkdir(parents=True)
    rig = Rig(folder, clock)
    try:
        path = folder / "monitor.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace(
            "notify: {language: en}",
            "  - {name: flappy, signal: probe_success_ratio, window: 5m, op: '<', threshold: 0.7}\n"
            "notify: {language: en}"), encoding="utf-8")
        rig.restart()
        rig.probes("main", "ok", "timeout", "ok", "timeout")  # 50 % < 70 %, never 3 in a row
        assert rig.cycle() == ["🔴 FIRING [warning] main (main) · flappy: probe_success_ratio = 50.0% "
                               "(threshold 70.0%); last 4 probes (newest first): timeout; ok; timeout; ok"]
    finally:
        rig.app.pipeline.close()
        rig.app.store.close()


def test_a_lost_order_is_announced_once_by_id_and_its_recovery_too(rig: Rig) -> None:
    rig.events({"event": "order_created", "order_id": "LOST1", "channel": "main", "amount": "25.50"},
               {"event": "pay_redirect", "order_id": "LOST1", "channel": "main"})
    rig.clock.advance(30)
    rig.events({"event": "callback_received", "order_id": "LOST1", "channel": "main", "verified": False,
                "trade_no": "2026112611000012345"})
    assert rig.cycle() == []                        # the deadline (5m) has not passed yet
    rig.clock.advance(timedelta(minutes=5, seconds=1))  # the callback's time is a whole second: +1 s grace
    [line] = rig.cycle()
    assert line.startswith("🟠 LOST ORDER LOST1 · main (main) · 25.50 · no pay time from the channel · "
                           "trade no 2026112611000012345: a callback arrived that failed verification")
    rig.restart()
    assert rig.cycle() == []                        # a restart does not announce it again
    status = status_view(rig.app.cfg, rig.app.store, rig.clock.now(), {})
    assert [lo["order_id"] for lo in status["lost_orders"]] == ["LOST1"]
    rig.clock.advance(60)
    rig.events({"event": "order_paid", "order_id": "LOST1", "channel": "main"})
    assert rig.cycle() == ["✅ LOST ORDER RECOVERED LOST1 · main (main) · 25.50: the shop has it now"]
    assert status_view(rig.app.cfg, rig.app.store, rig.clock.now(), {})["lost_orders"] == []


def test_order_counters_latency_histogram_funnel_and_ingest_lag(rig: Rig) -> None:
    m = rig.app.metrics
    rig.events({"event": "order_created", "order_id": "OLD", "channel": "main"})
    rig.cycle()                                     # what was there at start is learnt, not counted
    rig.clock.advance(10)
    rig.events({"event": "order_created", "order_id": "A", "channel": "main"},
               {"event": "pay_redirect", "order_id": "A", "channel": "main"})
    rig.clock.advance(12)
    rig.events({"event": "callback_received", "order_id": "A", "channel": "main", "verified": True},
               {"event": "order_delivered", "order_id": "A", "channel": "main"})
    rig.cycle()
    value = m.registry.get_sample_value
    assert value("paymon_orders_total", {"channel": "main", "outcome": "created"}) == 1
    assert value("paymon_orders_total", {"channel": "main", "outcome": "paid"}) == 1
    assert value("paymon_callback_latency_seconds_count", {"channel": "main"}) == 1
    assert value("paymon_callback_latency_seconds_sum", {"channel": "main"}) == pytest.approx(12.0)
    assert value("paymon_funnel_orders", {"channel": "main", "window": "15m", "stage": "delivered"}) == 1
    assert value("paymon_funnel_orders", {"channel": "main", "window": "15m", "stage": "created"}) == 2
    assert value("paymon_leader", {}) == 1
    source = rig.app.cfg.monitor.sources[0].label
    assert value("paymon_ingest_lag_seconds", {"source": source}) == 0
    rig.clock.advance(90)
    rig.cycle()
    assert value("paymon_ingest_lag_seconds", {"source": source}) == 90
    rig.cycle()
    assert value("paymon_orders_total", {"channel": "main", "outcome": "created"}) == 1   # never twice
    status = status_view(rig.app.cfg, rig.app.store, rig.clock.now(), {})
    assert status["channels"][0]["funnel"] == {"created": 2, "redirected": 1, "paid": 1, "callback": 1,
                                               "delivered": 1}
