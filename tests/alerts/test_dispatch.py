"""Outbox delivery: sent once, retried with backoff when the sink says a retry can help, given up otherwise."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from monitor.alerts.console import ConsoleSink
from monitor.alerts.dispatch import MAX_ATTEMPTS, deliver_outbox
from monitor.clock import FixedClock
from monitor.errors import SinkError
from monitor.models import AlertEvent
from monitor.store import Store


class Flaky:
    name = "flaky"

    def __init__(self, failures: int, retryable: bool = True) -> None:
        self.failures = failures
        self.retryable = retryable
        self.sent: list[Mapping[str, Any]] = []

    def send(self, payload: Mapping[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise SinkError("unreachable", retryable=self.retryable)
        self.sent.append(payload)


def queue(store: Store, clock: FixedClock, sink: str) -> None:
    e = AlertEvent("firing", "r", "c1", "critical", clock.now(), 3.0, 3.0, "probe_failures_in_a_row", "x")
    store.save_alerts([], [e], [sink])


def test_retry_until_sent_exactly_once(sqlite_store: Store, clock: FixedClock) -> None:
    sink = Flaky(failures=2)
    queue(sqlite_store, clock, "flaky")
    results: list[str] = []
    for _ in range(10):
        deliver_outbox(sqlite_store, {"flaky": sink}, on_result=lambda s, r: results.append(r))
        clock.advance(timedelta(minutes=1))
    assert results == ["retried", "retried", "sent"]
    assert len(sink.sent) == 1 and sink.sent[0]["rule"] == "r"


def test_non_retryable_gives_up_at_once(sqlite_store: Store, clock: FixedClock) -> None:
    queue(sqlite_store, clock, "flaky")
    results: list[str] = []
    deliver_outbox(sqlite_store, {"flaky": Flaky(1, retryable=False)}, on_result=lambda s, r: results.append(r))
    assert results == ["failed"] and sqlite_store.outbox_depth() == {}


def test_retries_are_capped(sqlite_store: Store, clock: FixedClock) -> None:
    queue(sqlite_store, clock, "flaky")
    results: list[str] = []
    for _ in range(MAX_ATTEMPTS + 3):
        deliver_outbox(sqlite_store, {"flaky": Flaky(100)}, on_result=lambda s, r: results.append(r))
        clock.advance(timedelta(hours=1))
    assert results == ["retried"] * (MAX_ATTEMPTS - 1) + ["failed"]


def test_console_sink_in_chinese_and_a_broken_stream() -> None:
    out = io.StringIO()
    sink = ConsoleSink(language="zh", names={"c1": "易支付主通道"}, stream=out)
    sink.send({"type": "alert", "kind": "firing", "rule": "low_success", "channel": "c1", "severity": "warning",
               "at": "2026-11-26T03:13:30+00:00", "value": 0.41, "threshold": 0.8, "signal": "success_ratio"})
    sink.send({"type": "weight", "channel": "c1", "old": 60, "new": 0, "reason": "rule channel_down: drain",
               "at": "2026-11-26T03:13:30+00:00"})
    assert out.getvalue().splitlines() == [
        "2026-11-26 11:13:30 +08:00 🔴 告警 [warning] 易支付主通道 (c1) · low_success: 支付成功率 = 41.0% (阈值 80.0%)",
        "2026-11-26 11:13:30 +08:00 ⚖️ 权重 易支付主通道 (c1): 60 → 0 (规则 channel_down: 摘除 (权重归零))",
    ]
    out.close()
    try:
        sink.send({"type": "weight", "channel": "c1", "old": 0, "new": 15, "reason": "r", "at": ""})
    except SinkError as exc:
        assert not exc.retryable
    else:
        raise AssertionError("a closed stream must raise SinkError")


def test_weight_reasons_in_chinese() -> None:
    from monitor.alerts.render import render_weight

    def zh(reason: str) -> str:
        return render_weight({"channel": "c1", "old": 60, "new": 30, "reason": reason}, language="zh")

    assert zh("rule low_success: reduce to 0.5× baseline").endswith("(规则 low_success: 降至原权重的 0.5 倍)")
    assert zh("restore step 2/3").endswith("(逐步恢复 第 2/3 步)")
    assert zh("edited in the shared config").endswith("(运营者手动修改了配置)")
    assert zh("something new").endswith("(something new)")


def test_group_wait_sends_one_message_per_channel(sqlite_store: Store, clock: FixedClock) -> None:
    def fire(rule: str, channel: str) -> None:
        e = AlertEvent("firing", rule, channel, "warning", clock.now(), 0.5, 0.8, "success_ratio", "x")
        sqlite_store.save_alerts([], [e], ["flaky"])

    sink = Flaky(failures=0)
    fire("channel_down", "c1")
    clock.advance(5)
    fire("low_success", "c1")
    fire("low_success", "c2")
    wait = timedelta(seconds=30)
    assert deliver_outbox(sqlite_store, {"flaky": sink}, group_wait=wait) == 0  # held: the group is still open
    clock.advance(26)  # c1's oldest has waited 31 s, c2's only 26 s
    assert deliver_outbox(sqlite_store, {"flaky": sink}, group_wait=wait) == 2
    assert [(p["type"], [i["rule"] for i in p["items"]]) for p in sink.sent] == [
        ("group", ["channel_down", "low_success"])]
    clock.advance(5)
    assert deliver_outbox(sqlite_store, {"flaky": sink}, group_wait=wait) == 1
    assert sink.sent[-1]["rule"] == "low_success" and sink.sent[-1]["channel"] == "c2"


def test_console_prints_a_group_as_one_message() -> None:
    out = io.StringIO()
    item = {"type": "alert", "kind": "firing", "channel": "c1", "severity": "warning", "value": 0.5,
            "threshold": 0.8, "signal": "success_ratio", "at": "2026-11-26T03:00:00+00:00"}
    ConsoleSink(language="en", stream=out).send({"type": "group", "channel": "c1", "items": [
        {**item, "rule": "a"}, {**item, "rule": "b"}]})
    assert [line.split(" · ")[1].split(":")[0] for line in out.getvalue().splitlines()] == ["a", "b"]


def test_console_stamps_are_in_the_display_zone() -> None:
    out = io.StringIO()
    ConsoleSink(language="en", stream=out, timezone="UTC").send(
        {"type": "weight", "channel": "c1", "old": 60, "new": 0, "reason": "rule channel_down: drain",
         "at": "2026-11-26T03:13:30+00:00"})
    assert out.getvalue().startswith("2026-11-26 03:13:30 +00:00 ⚖️ weight c1 (c1): 60 → 0")
