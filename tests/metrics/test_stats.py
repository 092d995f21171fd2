"""The window statistics (the README's "What the numbers mean") on hand-built order rows with a fixed ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from monitor.metrics.stats import compute_stats, paid_time
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


# ---- the lost-order ratio's denominator: every order paid at the channel ----------------------------


def test_every_paid_order_counts_in_the_denominator_whatever_says_it_was_paid() -> None:
    rows = [
        order("verified", 30, callback_at=29),                        # a verified callback, no pay time (epay V1)
        order("shop_paid", 30, shop_paid_at=29),                      # only the shop's paid mark (order_paid)
        order("unverified", 30, unverified_callback_at=29),           # only an unverified callback: lost
        order("reconciled", 30, channel_paid_at=29),                  # a pay time from reconciliation: lost
        order("unpaid", 30, expired_at=15),                           # never paid: not in the denominator
    ]
    s = stats(rows)[("c1", "1h")]
    assert (s.paid_at_channel, s.lost) == (4, 2)
    assert s.lost_order_ratio == pytest.approx(0.5)


def test_paid_known_only_from_a_query_with_no_pay_time_is_placed_and_judged_by_when_paymon_learned_it() -> None:
    rows = [
        order("learned_lost", 30, paid_learned_at=20),                    # a query said paid, no time: lost
        order("learned_then_cb", 30, paid_learned_at=20, callback_at=19),  # the callback places it, not lost
        order("learned_late", 30, paid_learned_at=16),                    # outside the 15m window
    ]
    s15, s1h = stats(rows)[("c1", "15m")], stats(rows)[("c1", "1h")]
    assert (s1h.paid_at_channel, s1h.lost) == (3, 2)
    assert (s15.paid_at_channel, s15.lost) == (0, 0)  # placed at 20, 19 and 16 min ago


def test_a_few_lost_among_many_called_back_is_a_small_ratio() -> None:
    # the shipped simulator setup: V1 notifies carry no pay time, reconciliation only finds the lost ones
    rows = [order(f"ok{i}", 40, callback_at=39) for i in range(98)]
    rows += [order("lost1", 40, channel_paid_at=39), order("lost2", 40, channel_paid_at=38)]
    s = stats(rows)[("c1", "1h")]
    assert (s.paid_at_channel, s.lost) == (100, 2)
    assert s.lost_order_ratio == pytest.approx(0.02)


def test_windows_place_an_order_by_its_pay_time_else_its_callback_or_shop_paid_time() -> None:
    rows = [
        # the channel's pay time wins over a later callback: paid 16 min ago, outside the 15m window
        order("paid_early", 30, channel_paid_at=16, callback_at=14),
        # no pay time: the callback places it, 14 min ago
        order("called_back", 30, callback_at=14),
        # no pay time: the earliest of the callback and the shop's paid mark, 16 min ago
        order("shop_first", 30, shop_paid_at=16, callback_at=14),
        # an unverified callback, then a verified one 20 s later: placed at the first, not lost
        order("retried", 30, unverified_callback_at=14, callback_at=13.7),
    ]
    s15, s1h = stats(rows)[("c1", "15m")], stats(rows)[("c1", "1h")]
    assert (s15.paid_at_channel, s15.lost) == (2, 0)
    assert (s1h.paid_at_channel, s1h.lost) == (4, 0)


def test_a_paid_order_counts_only_once_its_callback_deadline_has_passed() -> None:
    rows = [
        order("cb_new", 5, callback_at=3),                 # 3 min ago: deadline 5 min, not counted yet
        order("shop_new", 5, shop_paid_at=4),
        order("unverified_new", 5, unverified_callback_at=4),
        order("cb_old", 10, callback_at=6),                # 6 min ago: counted
    ]
    s = stats(rows)[("c1", "15m")]
    assert (s.paid_at_channel, s.lost) == (1, 0)
    assert s.lost_order_ratio == 0.0


def test_paid_time_follows_the_chain_and_skips_missing_columns() -> None:
    frame = orders_to_frame([
        order("a", 30, channel_paid_at=20, callback_at=10),
        order("b", 30, callback_at=10, unverified_callback_at=12, shop_paid_at=11),
        order("c", 30),
    ])
    got = paid_time(frame)
    assert got.iloc[0] == pd.Timestamp(m(20)) and got.iloc[1] == pd.Timestamp(m(12)) and pd.isna(got.iloc[2])
    assert paid_time(frame.drop(columns=["channel_paid_at"])).iloc[0] == pd.Timestamp(m(10))
