"""One lost-order report: read the orders to judge, decide (:mod:`monitor.reconcile.lost`), record and announce;
and the same for held funds (:mod:`monitor.reconcile.held`).

The store makes no decision and the rules do no I/O; this is the one place they meet. Each order is reported
lost once, and recovered once; held once, and released once: the store skips an order already recorded (or
already recovered / released).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from monitor.models import HeldFunds, LostOrder, PaidOrder
from monitor.reconcile.held import released
from monitor.reconcile.lost import newly_lost, recovered

__all__ = ["HeldFundsBook", "LostOrderBook", "LostReport", "report_held", "report_lost"]


@dataclass(frozen=True)
class LostReport:
    """What one lost-order / held-funds report recorded: lost orders found, recorded ones the shop has since
    completed, held funds found, and recorded ones released."""

    found: list[LostOrder] = field(default_factory=list)
    recovered: list[LostOrder] = field(default_factory=list)
    held: list[HeldFunds] = field(default_factory=list)
    released: list[HeldFunds] = field(default_factory=list)


class LostOrderBook(Protocol):
    """The reads and writes a lost-order report needs (``monitor.store.reconcile.ReconcileStore`` has them)."""

    def unreported_paid(self, since: datetime) -> list[PaidOrder]: ...

    def open_lost(self) -> list[tuple[LostOrder, PaidOrder]]: ...

    def record_lost(self, found: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                    now: datetime) -> list[LostOrder]: ...

    def mark_recovered(self, recovered: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                       now: datetime) -> list[LostOrder]: ...


def report_lost(book: LostOrderBook, *, now: datetime, deadline: timedelta, since: datetime,
                sinks: Sequence[str]) -> tuple[list[LostOrder], list[LostOrder]]:
    """Record and enqueue every newly lost order, and every recorded one the shop has since completed.

    Lost: paid at the channel (its pay time, or an unverified callback) at or after ``since``, the deadline
    passed, and still neither a verified callback nor paid in the shop. Returns (found, recovered), as recorded.
    """
    found = newly_lost(book.unreported_paid(since), now=now, deadline=deadline)
    found = book.record_lost(found, deadline=deadline, sinks=sinks, now=now)
    back = recovered(book.open_lost(), now=now)
    back = book.mark_recovered(back, deadline=deadline, sinks=sinks, now=now)
    return found, back


class HeldFundsBook(Protocol):
    """The reads and writes a held-funds report needs (``monitor.store.reconcile.ReconcileStore`` has them)."""

    def unreported_held(self) -> list[HeldFunds]: ...

    def open_held(self) -> list[tuple[HeldFunds, str | None, bool]]: ...

    def record_held(self, found: Sequence[HeldFunds], *, sinks: Sequence[str], now: datetime) -> list[HeldFunds]: ...

    def mark_released(self, released: Sequence[HeldFunds], *, sinks: Sequence[str],
                      now: datetime) -> list[HeldFunds]: ...


def report_held(book: HeldFundsBook, *, now: datetime, sinks: Sequence[str]) -> tuple[list[HeldFunds],
                                                                                        list[HeldFunds]]:
    """Record and enqueue every order the channel newly says it holds the money of, and every recorded one the
    channel has since settled otherwise (or the shop completed). Returns (held, released), as recorded."""
    found = book.record_held(book.unreported_held(), sinks=sinks, now=now)
    gone = book.mark_released(released(book.open_held(), now=now), sinks=sinks, now=now)
    return found, gone
