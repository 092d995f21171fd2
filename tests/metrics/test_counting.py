"""Each order's outcome is counted once per process, late outcomes included, and a restart starts at zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.metrics.counting import OnceCounter
from monitor.metrics.stats import judge_orders, order_facts
from monitor.store.store import orders_to_frame

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def m(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def facts(rows: list[dict[str, Any]], now: datetime = NOW) -> Any:
    return order_facts(judge_orders(orders_to_frame(rows), now=now, channels=["c1", "c2"], pay_timeout={},
                                    default_pay_timeout=timedelta(minutes=15), callback_deadline=timedelta(minutes=5)))


def test_order_facts_follow_the_stats_rules() -> None:
    rows = [
        {"order_id": "paid", "channel": "c1", "created_at": m(10), "redirected_at": m(10), "callback_at": m(9)},
        {"order_id": "failed", "channel": "c1", "created_at": m(30)},
        {"order_id": "lost", "channel": "c2", "created_at": m(30), "channel_paid_at": m(29)},
        {"order_id": "pending", "channel": "c1", "created_at": m(1)},
        {"order_id": "foreign", "channel": "c9", "created_at": m(1)},
    ]
    f = facts(rows).set_index("order_id")
    assert list(f.index) == ["paid", "failed", "lost", "pending"]
    assert f.loc["paid", "paid"] and not f.loc["paid", "failed"]
    assert f.loc["paid", "latency"] == pytest.approx(60.0)
    assert f.loc["failed", "failed"] and f.loc["lost", "lost"] and f.loc["lost", "failed"]
    assert not (f.loc["pending", "paid"] or f.loc["pending", "failed"] or f.loc["pending", "lost"])


def test_counts_each_outcome_once_and_starts_at_zero() -> None:
    counter = OnceCounter()
    first = [{"order_id": "A", "channel": "c1", "created_at": m(10), "redirected_at": m(10), "callback_at": m(9)}]
    assert counter.step(facts(first)) == ({}, [])          # the first call only learns what is there
    rows = first + [
        {"order_id": "B", "channel": "c1", "created_at": m(3), "redirected_at": m(3), "callback_at": m(2.5)},
        {"order_id": "C", "channel": "c2", "created_at": m(2)},
    ]
    counts, latencies = counter.step(facts(rows))
    assert dict(counts) == {("c1", "created"): 1, ("c1", "paid"): 1, ("c2", "created"): 1}
    assert latencies == [("c1", pytest.approx(30.0))]
    assert counter.step(facts(rows)) == ({}, [])           # nothing new, nothing counted
    # C fails later (pay timeout passes): counted then, once
    later = NOW + timedelta(minutes=20)
    counts, _ = counter.step(facts(rows, later))
    assert dict(counts) == {("c2", "failed"): 1}
    assert dict(counter.step(facts(rows, later))[0]) == {}
    # an order that left the frame is forgotten (memory stays bounded by the window)
    counter.step(facts(rows[1:], later))
    counts, _ = counter.step(facts(rows, later))
    assert dict(counts) == {("c1", "created"): 1, ("c1", "paid"): 1}
