"""The lost-order rule on its own (pure, a fixed ``now``) and the report that chains store reads, the rule and
store writes (on a fake book: which calls, in which order, and what is returned)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor.models import LostOrder, PaidOrder
from monitor.reconcile.lost import newly_lost, recovered
from monitor.reconcile.reporting import report_lost

NOW = datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=5)
S = timedelta(seconds=1)


def paid(**kw: object) -> PaidOrder:
    args: dict[str, object] = {"order_id": "A", "channel": "c1", "amount": "10.00", "trade_no": "T1",
                               "channel_paid_at": None}
    args.update(kw)
    return PaidOrder(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("order", "evidence"), [
    # the channel's pay time, deadline passed (a fraction of a second: the deadline runs from the time itself)
    (paid(channel_paid_at=NOW - DEADLINE - timedelta(microseconds=500_000)), "reconcile"),
    # a whole-second pay time stands for the whole second: lost one second after pay time + deadline
    (paid(channel_paid_at=NOW - DEADLINE - S), "reconcile"),
    # no pay time, an unverified callback as the evidence
    (paid(unverified_callback_at=NOW - DEADLINE - S), "unverified_callback"),
    # both: the pay time is the evidence
    (paid(channel_paid_at=NOW - DEADLINE - S, unverified_callback_at=NOW), "reconcile"),
])
def test_paid_at_the_channel_and_past_the_deadline_is_lost(order: PaidOrder, evidence: str) -> None:
    [lost] = newly_lost([order], now=NOW, deadline=DEADLINE)
    assert lost == LostOrder("A", "c1", "10.00", "T1", order.channel_paid_at, evidence, NOW)


@pytest.mark.parametrize("order", [
    paid(),                                                                   # no evidence of payment
    paid(channel_paid_at=NOW - DEADLINE),                                     # whole second: not before its end
    paid(channel_paid_at=NOW - DEADLINE + timedelta(microseconds=1)),         # deadline not passed
    paid(unverified_callback_at=NOW - timedelta(minutes=1)),
    paid(channel_paid_at=NOW - timedelta(hours=1), callback_at=NOW - S),      # a verified callback (even late)
    paid(channel_paid_at=NOW - timedelta(hours=1), shop_paid_at=NOW - S),     # the shop marked it paid
], ids=["no-evidence", "whole-second", "not-yet", "unverified-not-yet", "callback", "shop-paid"])
def test_not_lost(order: PaidOrder) -> None:
    assert newly_lost([order], now=NOW, deadline=DEADLINE) == []


def test_lost_orders_keep_the_order_they_were_read_in() -> None:
    orders = [paid(order_id=oid, channel_paid_at=NOW - timedelta(hours=1)) for oid in ("B", "A", "C")]
    assert [lo.order_id for lo in newly_lost(orders, now=NOW, deadline=DEADLINE)] == ["B", "A", "C"]


FOUND = LostOrder("A", "c1", "10.00", "T1", NOW - timedelta(hours=1), "reconcile", NOW - timedelta(minutes=30))


@pytest.mark.parametrize(("order", "back"), [
    (paid(), False),
    (paid(unverified_callback_at=NOW), False),   # an unverified callback completes nothing
    (paid(callback_at=NOW - S), True),
    (paid(shop_paid_at=NOW - S), True),
])
def test_a_lost_order_recovers_once_the_shop_has_the_payment(order: PaidOrder, back: bool) -> None:
    assert recovered([(FOUND, order)], now=NOW) == ([replace(FOUND, recovered_at=NOW)] if back else [])


def test_an_already_recovered_order_does_not_recover_again() -> None:
    done = replace(FOUND, recovered_at=NOW - S)
    assert recovered([(done, paid(callback_at=NOW - S))], now=NOW) == []


class FakeBook:
    """Records calls; ``record_lost``/``mark_recovered`` keep only what ``accept`` lets through (as the store
    skips an order already recorded)."""

    def __init__(self, unreported: list[PaidOrder], open_lost: list[tuple[LostOrder, PaidOrder]],
                 accept: set[str] | None = None) -> None:
        self.unreported, self.open, self.accept = unreported, open_lost, accept
        self.calls: list[tuple[object, ...]] = []

    def unreported_paid(self, since: datetime) -> list[PaidOrder]:
        self.calls.append(("unreported_paid", since))
        return self.unreported

    def open_lost(self) -> list[tuple[LostOrder, PaidOrder]]:
        self.calls.append(("open_lost",))
        return self.open

    def _keep(self, orders: Sequence[LostOrder]) -> list[LostOrder]:
        return [lo for lo in orders if self.accept is None or lo.order_id in self.accept]

    def record_lost(self, found: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                    now: datetime) -> list[LostOrder]:
        self.calls.append(("record_lost", [lo.order_id for lo in found], deadline, tuple(sinks), now))
        return self._keep(found)

    def mark_recovered(self, recovered: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                       now: datetime) -> list[LostOrder]:
        self.calls.append(("mark_recovered", [lo.order_id for lo in recovered], deadline, tuple(sinks), now))
        return self._keep(recovered)


def test_report_reads_decides_and_records_what_it_found() -> None:
    since = NOW - timedelta(hours=24)
    book = FakeBook(
        [paid(order_id="LOST", channel_paid_at=NOW - timedelta(hours=1)), paid(order_id="FRESH", channel_paid_at=NOW)],
        [(FOUND, paid(shop_paid_at=NOW - S)), (replace(FOUND, order_id="STILL"), paid(order_id="STILL"))],
    )
    found, back = report_lost(book, now=NOW, deadline=DEADLINE, since=since, sinks=["console"])
    assert [(lo.order_id, lo.found_at) for lo in found] == [("LOST", NOW)]
    assert back == [replace(FOUND, recovered_at=NOW)]
    assert book.calls == [
        ("unreported_paid", since),
        ("record_lost", ["LOST"], DEADLINE, ("console",), NOW),
        ("open_lost",),
        ("mark_recovered", ["A"], DEADLINE, ("console",), NOW),
    ]


def test_report_returns_only_what_the_store_recorded() -> None:
    book = FakeBook([paid(order_id="X", channel_paid_at=NOW - timedelta(hours=1))], [(FOUND, paid(callback_at=NOW))],
                    accept=set())
    assert report_lost(book, now=NOW, deadline=DEADLINE, since=NOW - timedelta(hours=1), sinks=[]) == ([], [])
