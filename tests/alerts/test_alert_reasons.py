"""Alerts say why: a probe alert names the last probes' outcomes and details (newest first), and the lost orders
found at once are one message listing them by channel (each order still recorded once)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

from monitor.alerts.console import ConsoleSink
from monitor.alerts.probe_reasons import probe_reason, with_probe_reasons
from monitor.alerts.render import render_alert
from monitor.config import Rule
from monitor.models import AlertEvent, LostOrder, ProbeResult
from monitor.store import Store
from monitor.store.alerts import alert_payload
from monitor.store.reconcile import ReconcileStore

RULES = (
    Rule.model_validate({"name": "channel_down", "signal": "probe_failures_in_a_row", "op": ">=", "threshold": 3}),
    Rule.model_validate({"name": "slow_orders", "signal": "probe_latency_p95", "probe": "test_order", "op": ">",
                         "threshold": 5}),
    Rule.model_validate({"name": "low_success", "signal": "success_ratio", "op": "<", "threshold": 0.5}),
)


def _probe(outcome: str, detail: str) -> dict[str, str]:
    return {"outcome": outcome, "detail": detail}


def test_the_reason_says_the_outcomes_newest_first_and_counts_repeats() -> None:
    same = [_probe("http_error", "act=query: HTTP 500")] * 3
    assert probe_reason(same, language="en") == "last 3 probes (newest first): HTTP error (act=query: HTTP 500) ×3"
    assert probe_reason(same, language="zh") == "最近 3 次探测 (新→旧): HTTP 错误 (act=query: HTTP 500) ×3"
    mixed = [_probe("timeout", "no complete answer within 2s"),
             _probe("bad_response", "not JSON (HTTP 200): '<html><body>502 Bad Gateway'"),
             _probe("connect_error", "cannot connect: connection refused"),
             _probe("bad_signature", "act=query: reply signature does not verify")]
    assert probe_reason(mixed, language="en") == (
        "last 4 probes (newest first): timeout (no complete answer within 2s); bad answer (not JSON (HTTP 200): "
        "'<html><body>502 Bad Gateway'); connection failed (cannot connect: connection refused); signature "
        "mismatch (act=query: reply signature does not verify)")
    long = probe_reason([_probe("business_error", "x" * 300)], language="en")
    assert long.startswith("last 1 probe (newest first): gateway refused (xxx") and long.endswith("…)")
    assert len(long) < 200


def test_a_probe_alert_carries_the_last_probes_and_the_text_names_them(sqlite_store: Store) -> None:
    now = sqlite_store.clock.now()
    sqlite_store.add_probe_results([
        ProbeResult("main", "query", "ok", 0.1, now - timedelta(seconds=50), "ok"),
        ProbeResult("main", "query", "connect_error", 0.1, now - timedelta(seconds=40),
                    "cannot connect: connection refused"),
        ProbeResult("main", "query", "timeout", 2.0, now - timedelta(seconds=30), "no complete answer within 2s"),
        ProbeResult("main", "query", "http_error", 0.1, now - timedelta(seconds=20), "act=query: HTTP 500"),
        ProbeResult("main", "test_order", "ok", 7.5, now - timedelta(seconds=10), "created"),
    ])

    def event(rule: str, signal: str, kind: str = "firing", value: float = 3.0) -> AlertEvent:
        return AlertEvent(kind, rule, "main", "critical", now, value, 3.0, signal, "")  # type: ignore[arg-type]

    down, slow, low, resolved = with_probe_reasons(
        [event("channel_down", "probe_failures_in_a_row"), event("slow_orders", "probe_latency_p95", value=7.5),
         event("low_success", "success_ratio", value=0.2), event("channel_down", "probe_failures_in_a_row",
                                                                 "resolved", 0.0)],
        RULES, sqlite_store.probe_results)
    assert down.probes == (("http_error", "act=query: HTTP 500"), ("timeout", "no complete answer within 2s"),
                           ("connect_error", "cannot connect: connection refused"))
    assert slow.probes == (("ok", "created"),)  # a windowed probe rule: its own probe's latest results
    assert low.probes == () and resolved.probes == ()
    payload = alert_payload(down)
    assert render_alert(payload, language="en") == (
        "🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 3 (threshold 3); last 3 probes "
        "(newest first): HTTP error (act=query: HTTP 500); timeout (no complete answer within 2s); connection "
        "failed (cannot connect: connection refused)")
    assert render_alert(payload, language="zh").endswith(
        "最近 3 次探测 (新→旧): HTTP 错误 (act=query: HTTP 500); 超时 (no complete answer within 2s); 连接失败 "
        "(cannot connect: connection refused)")
    assert "最近" not in render_alert(alert_payload(resolved), language="zh")


def _lost(i: int, channel: str, found_at: datetime) -> LostOrder:
    return LostOrder(f"{channel[:1].upper()}{i:03d}", channel, f"{i}.00", f"T{i}", found_at, "reconcile", found_at)


def test_many_lost_orders_are_one_message_by_channel_and_each_is_recorded_once(sqlite_store: Store) -> None:
    now = sqlite_store.clock.now()
    book = ReconcileStore(sqlite_store)
    found = [_lost(i, "main", now) for i in range(25)] + [_lost(i, "backup", now) for i in range(3)]
    deadline = timedelta(minutes=5)
    assert len(book.record_lost(found, deadline=deadline, sinks=["console"], now=now)) == 28
    [item] = sqlite_store.due_outbox("console")
    stream = io.StringIO()
    ConsoleSink(language="en", names={"main": "Main"}, stream=stream).send(item.payload)
    [line] = stream.getvalue().splitlines()
    assert "🟠 28 LOST ORDERS (paid at the channel, no verified callback within 5 min" in line
    ids = ", ".join(f"M{i:03d} ({i}.00)" for i in range(20))
    assert f"Main (main) 25: {ids}, +5 more; backup (backup) 3: B000 (0.00), B001 (1.00), B002 (2.00)" in line
    stream = io.StringIO()
    ConsoleSink(language="zh", stream=stream).send(item.payload)
    assert "🟠 掉单 28 笔" in stream.getvalue() and "+5 笔" in stream.getvalue()

    # found again (a second report, or after a restart): nothing recorded twice, nothing announced twice
    reopened = Store.open(str(sqlite_store.engine.url), clock=sqlite_store.clock)
    try:
        again = ReconcileStore(reopened).record_lost(found, deadline=deadline, sinks=["console"], now=now)
        assert again == [] and len(reopened.due_outbox("console")) == 1
        assert len(ReconcileStore(reopened).lost_orders(limit=100)) == 28
    finally:
        reopened.close()


def test_a_single_lost_order_keeps_its_own_detailed_message(sqlite_store: Store) -> None:
    now = sqlite_store.clock.now()
    book = ReconcileStore(sqlite_store)
    book.record_lost([_lost(7, "main", now)], deadline=timedelta(minutes=5), sinks=["console"], now=now)
    [item] = sqlite_store.due_outbox("console")
    assert item.payload["type"] == "lost_order" and item.payload["order_id"] == "M007"
