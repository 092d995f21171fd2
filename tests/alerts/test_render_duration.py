"""Durations as people read them, in both languages, wherever a deadline is printed (a sub-minute deadline was
printed as ``within 0.333333 min``)."""

from __future__ import annotations

import pytest

from monitor.alerts.render import duration, render_lost


@pytest.mark.parametrize(("seconds", "en", "zh"), [
    (20, "20 s", "20 秒"),
    (0.5, "0.5 s", "0.5 秒"),
    (0, "0 s", "0 秒"),
    (300, "5 min", "5 分钟"),
    (90, "1 min 30 s", "1 分钟 30 秒"),
    (5400, "1 h 30 min", "1 小时 30 分钟"),
    (86400 + 3600, "1 d 1 h", "1 天 1 小时"),
])
def test_duration(seconds: float, en: str, zh: str) -> None:
    assert (duration(seconds, "en"), duration(seconds, "zh")) == (en, zh)


def test_a_sub_minute_deadline_is_printed_in_seconds() -> None:
    payload = {"type": "lost_order", "kind": "found", "order_id": "A1", "channel": "c1", "amount": "1.00",
               "trade_no": None, "channel_paid_at": "2026-11-26T03:00:00+00:00", "paid_learned_at": None,
               "evidence": "reconcile", "deadline_s": 20.0, "at": "2026-11-26T03:01:00+00:00"}
    en, zh = render_lost(payload, language="en"), render_lost(payload, language="zh")
    assert en.endswith("no verified callback within 20 s") and "min" not in en
    assert zh.endswith("20 秒内商户未收到有效回调") and "分钟" not in zh
    assert "paid at the channel 2026-11-26 11:00:00 +08:00" in en and "通道支付时间 2026-11-26 11:00:00 +08:00" in zh


def test_times_are_shown_in_the_display_zone_with_its_offset() -> None:
    payload = {"type": "lost_order", "kind": "found", "order_id": "A1", "channel": "c1", "amount": "1.00",
               "trade_no": None, "channel_paid_at": None, "paid_learned_at": "2026-11-26T03:00:00+00:00",
               "evidence": "reconcile", "deadline_s": 300.0, "at": "2026-11-26T03:01:00+00:00"}
    assert "paymon learned of it at 2026-11-26 03:00:00 +00:00" in render_lost(payload, language="en",
                                                                              timezone="UTC")
    assert "获知时间 2026-11-25 22:00:00 -05:00" in render_lost(payload, language="zh", timezone="America/New_York")
