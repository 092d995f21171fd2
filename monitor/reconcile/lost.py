"""The lost-order rule: which orders are lost (掉单), and which lost ones the shop has since completed. Pure: no I/O,
``now`` given.

An order is **lost** when the channel says it was paid (its pay time, or else a callback that did not verify, or
else the time paymon learned it from an order query that gave no pay time) and the shop still has neither a
verified callback nor its own paid mark once the callback deadline has passed. Only a plainly paid order can be
lost: held funds, refunded and closed orders never are (:mod:`monitor.reconcile.held` has held funds). The
deadline runs from the end of a whole-second pay time (:func:`monitor.metrics.stats.lost_deadline`, the same rule
the lost-order ratio uses). A recorded lost order has **recovered** once the shop has the payment after all (a
replayed notify, a manual 补单).

The store reads the orders to judge and records what is decided; :func:`monitor.reconcile.reporting.report_lost`
chains the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from monitor.metrics.stats import lost_deadline
from monitor.models import LostOrder, PaidOrder

__all__ = ["newly_lost", "recovered"]


def newly_lost(orders: Iterable[PaidOrder], *, now: datetime, deadline: timedelta) -> list[LostOrder]:
    """The orders among ``orders`` that are lost at ``now``, found at ``now``, in the order given.

    ``evidence`` is ``reconcile`` when the channel's order query said paid (with its pay time, or without one:
    then ``paid_learned_at`` is kept, and ``channel_paid_at`` stays None), else ``unverified_callback``."""
    lost: list[LostOrder] = []
    for o in orders:
        evidence_at = o.evidence_at
        if evidence_at is None or o.completed or lost_deadline(evidence_at, deadline) > now:
            continue
        queried = o.channel_paid_at is not None or o.paid_learned_at is not None
        evidence = "reconcile" if queried else "unverified_callback"
        lost.append(LostOrder(o.order_id, o.channel, o.amount, o.trade_no, o.channel_paid_at, evidence, now,
                              paid_learned_at=None if o.channel_paid_at is not None else o.paid_learned_at))
    return lost


def recovered(open_lost: Iterable[tuple[LostOrder, PaidOrder]], *, now: datetime) -> list[LostOrder]:
    """The recorded lost orders whose order the shop has completed since, recovered at ``now``, in the order given."""
    return [replace(lost, recovered_at=now) for lost, order in open_lost if lost.recovered_at is None and
            order.completed]

