"""Every built-in signal reads the right number, and says "no verdict" (None) without data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.signals import SIGNALS, Query, Signals, signal_value
from monitor.models import ChannelStats, ProbeResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATS = ChannelStats("c1", "15m", orders=40, succeeded=30, failed=10, success_ratio=0.75, paid_at_channel=30,
                     lost=3, lost_order_ratio=0.1, callback_p50=2.0, callback_p95=9.0, callback_p99=20.0, pending=4)
PROBES = [ProbeResult("c1", "query", o, lat, T0 - timedelta(seconds=30 * i))
          for i, (o, lat) in enumerate([("ok", 0.1), ("bad_signature", 0.2), ("ok", 0.3), ("timeout", 5.0),
                                        ("ok", 9.9)])]
SIG = Signals(stats={("c1", "15m"): STATS}, probe_streaks={("c1", "query"): 2}, probe_window={("c1", "query"): PROBES},
              unsettled_balance={"c1": 120.5}, merchant_banned={"c1": 1.0})
Q = Query("c1", "15m", 100.0, "query", 20)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("probe_failures_in_a_row", 2.0),
        ("probe_success_ratio", 0.5),          # the 4 results within 100 s: ok, bad_sig, ok, timeout
        ("probe_latency_p95", pytest.approx(0.29)),
        ("bad_signatures", 1.0),
        ("success_ratio", 0.75),
        ("orders", 40.0),
        ("lost_orders", 3.0),
        ("lost_order_ratio", 0.1),
        ("callback_latency_p50", 2.0),
        ("callback_latency_p95", 9.0),
        ("callback_latency_p99", 20.0),
        ("pending_orders", 4.0),
        ("unsettled_balance", 120.5),
        ("merchant_banned", 1.0),
    ],
)
def test_signal_values(name: str, value: float) -> None:
    assert signal_value(name, SIG, Q) == value


def test_every_signal_is_none_without_data() -> None:
    empty = Signals(stats={})
    assert {name: signal_value(name, empty, Q) for name in SIGNALS} == dict.fromkeys(SIGNALS)


def test_volume_gate_of_the_rule() -> None:
    assert signal_value("success_ratio", SIG, Query("c1", "15m", 900, "query", 41)) is None
    assert signal_value("success_ratio", SIG, Query("c1", "15m", 900, "query", 40)) == 0.75


def test_every_configurable_signal_has_an_implementation() -> None:
    from monitor.config import SIGNALS as CONFIGURABLE

    assert set(SIGNALS) == set(CONFIGURABLE)


def test_merchant_standing_is_the_newest_probe_that_says_anything() -> None:
    from monitor.models import MERCHANT_BANNED
    from monitor.snapshot import merchant_standing

    def result(channel: str, probe: str, outcome: str, minutes: int, code: str | None = None) -> ProbeResult:
        return ProbeResult(channel, probe, outcome, 0.1, T0 + timedelta(minutes=minutes), "", code)

    last = {
        ("banned", "query"): result("banned", "query", "business_error", 3, MERCHANT_BANNED),
        ("banned", "test_order"): result("banned", "test_order", "ok", 1),
        ("back", "balance"): result("back", "balance", "business_error", 1, MERCHANT_BANNED),
        ("back", "query"): result("back", "query", "ok", 2),
        ("silent", "query"): result("silent", "query", "timeout", 5),  # a timeout says nothing about standing
        ("mixed", "query"): result("mixed", "query", "timeout", 9),
        ("mixed", "balance"): result("mixed", "balance", "business_error", 4, MERCHANT_BANNED),
    }
    assert merchant_standing(last) == {"banned": 1.0, "back": 0.0, "mixed": 1.0}


def test_the_banned_alert_is_said_in_words() -> None:
    from monitor.alerts.render import render_alert

    payload = {"kind": "firing", "rule": "merchant_banned", "channel": "c1", "signal": "merchant_banned",
               "severity": "critical", "value": 1.0, "threshold": 1.0}
    assert render_alert(payload, language="en") == (
        "🔴 FIRING [critical] c1 (c1) · merchant_banned: merchant banned at the gateway")
    assert render_alert(payload, language="zh").endswith("merchant_banned: 商户已被通道封禁")
    assert render_alert({**payload, "kind": "resolved", "value": 0.0}, language="en").endswith(
        "merchant_banned: the gateway no longer reports the merchant banned")
