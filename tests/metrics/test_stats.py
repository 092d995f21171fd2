"""SPEC §2.8 numbers on hand-built order rows with a fixed ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.metrics.stats import compute_stats
from monitor.store.store import orders_to_frame

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
W = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1)}


def m(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def stats(rows: list[dict[str, Any]], min_orders: int = 1, **kw: Any) -> Any:
    kw.setdefault("pay_timeout", {})
    return compute_stats(orders_to_frame(rows), now=NOW, windows=W, channels=["c1", "c2"],
                         default_pay_timeout=timedelta(minutes=15), callback_deadline=timedelta(minutes=5),
                         min_orders=min_orders, **kw)


def order(oid: str, created: float, **marks: float) -> dict[str, Any]:
    row: dict[str, Any] = {"order_id": oid, "channel": "c1", "created_at": m(created)}
    row.update({k: m(v) for k, v in marks.items()})
    return row


def test_success_failure_pending_in_windows() -> None:
    rows = [
        order("ok1", 30, callback_at=29, channel_paid_at=29.5, redirected_at=30),  # success at -29 (1h only)
        order("ok2", 10, shop_paid_at=8),                                          # success at -8 (both)
        order("fail_timeout", 40),                                                 # fails at -25 (1h)
        order("fail_expired", 12, expired_at=7),                                   # fails at -7 (both)
        order("late", 50, callback_at=20),                                         # paid after timeout: failed at -35
        order("pending", 5),
    ]
    s = stats(rows)
    s15, s1h = s[("c1", "15m")], s[("c1", "1h")]
    assert (s15.succeeded, s15.failed, s15.pending, s15.orders) == (1, 1, 1, 3)
    assert s15.success_ratio == pytest.approx(0.5)
    assert (s1h.succeeded, s1h.failed) == (2, 3)
    assert s1h.success_ratio == pytest.approx(0.4)
    assert s[("c2", "1h")].success_ratio is None and s[("c2", "1h")].orders == 0


def test_min_orders_gate_gives_no_value() -> None:
    rows = [order(f"o{i}", 30, shop_paid_at=29) for i in range(19)]
    assert stats(rows, min_orders=20)[("c1", "1h")].success_ratio is None
    assert stats(rows, min_orders=19)[("c1", "1h")].success_ratio == 1.0


def test_channel_pay_timeout_override() -> None:
    rows = [order("o", 20, shop_paid_at=2)]  # paid 18 minutes after creation
    assert stats(rows)[("c1", "1h")].failed == 1
    s = stats(rows, pay_timeout={"c1": timedelta(minutes=30)})[("c1", "1h")]
    assert (s.succeeded, s.failed) == (1, 0)


def test_lost_orders_and_ratio() -> None:
    rows = [
        order("lost", 30, channel_paid_at=29),                        # paid, never called back
        order("late_cb", 30, channel_paid_at=29, callback_at=20),     # callback 9 min after pay: lost
        order("fine", 30, channel_paid_at=29, callback_at=28),
        order("unverified", 30, unverified_callback_at=28),           # unverified callback only: lost
        order("too_new", 3, channel_paid_at=2),                       # deadline not reached: not judged yet
    ]
    s = stats(rows)[("c1", "1h")]
    assert (s.lost, s.paid_at_channel) == (3, 4)
    assert s.lost_order_ratio == pytest.approx(0.75)
    assert stats(rows)[("c1", "15m")].lost_order_ratio is None


def test_callback_latency_quantiles() -> None:
    rows = [order(f"o{i}", 40, channel_paid_at=30, callback_at=30 - (i + 1) / 60) for i in range(100)]
    rows.append(order("redirect_based", 40, redirected_at=40, callback_at=39))  # 60 s from redirect
    s = stats(rows)[("c1", "1h")]
    assert s.callback_p50 == pytest.approx(51.5, abs=0.6)
    assert s.callback_p99 is not None and 99 <= s.callback_p99 <= 100
    assert stats(rows)[("c1", "15m")].callback_p95 is None


def test_funnel_follows_the_orders_created_in_the_window() -> None:
    rows = [
        order("a", 10, redirected_at=10, callback_at=9, shop_paid_at=9, delivered_at=9),
        order("b", 10, redirected_at=10, shop_paid_at=8),      # paid in the shop, callback not logged
        order("c", 10, redirected_at=10),                       # never paid
        order("d", 12),                                         # never reached the channel
        order("old", 40, redirected_at=40, callback_at=39),     # created before the 15m window
    ]
    s15, s1h = stats(rows)[("c1", "15m")], stats(rows)[("c1", "1h")]
    assert (s15.orders, s15.redirected, s15.paid, s15.callback, s15.delivered) == (4, 3, 2, 1, 1)
    assert (s1h.orders, s1h.redirected, s1h.paid, s1h.callback, s1h.delivered) == (5, 4, 3, 2, 1)


def test_a_whole_second_pay_time_stands_for_the_whole_second() -> None:
    whole = m(6)                                       # 11:54:00, as epay's endtime gives it
    rows = [order("o", 10)]
    rows[0].update(channel_paid_at=whole, callback_at=whole + timedelta(minutes=5, seconds=0.5))
    s = stats(rows)[("c1", "15m")]
    assert (s.paid_at_channel, s.lost) == (1, 0)       # the buyer may have paid at 11:54:00.9
    precise = whole + timedelta(seconds=0.25)
    rows[0].update(channel_paid_at=precise, callback_at=precise + timedelta(minutes=5, seconds=0.5))
    assert stats(rows)[("c1", "15m")].lost == 1
