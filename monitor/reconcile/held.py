"""The held-funds rule: which orders are held funds, and which recorded ones are released. Pure: no I/O, ``now``
given.

**Held funds**: the channel's order query says it holds the buyer's money without completing the
payment (epay 3 已冻结, EP-new 4 预授权: funds frozen, no pay time, no notify). The shop has no order and nothing
will come by itself: an operator must look. Its own class, not lost and not paid, never replayed. Recorded held
funds are **released** when the channel later says something else (``paid``: the normal lost / paid path takes
over; ``refunded``, ``closed``, ``unpaid``: the money went back or never left) or the shop completes the order.
An answer that says nothing (not found, no answer, an unknown word) releases nothing: unknown stays unknown.

The store reads and records; :func:`monitor.reconcile.reporting.report_lost` chains the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from monitor.models import HeldFunds

__all__ = ["RELEASING_STATES", "released"]

#: Answers that end held funds: the channel no longer holds the money without completing the payment.
RELEASING_STATES = frozenset({"paid", "refunded", "closed", "unpaid"})


def released(open_held: Iterable[tuple[HeldFunds, str | None, bool]], *, now: datetime) -> list[HeldFunds]:
    """The recorded held funds (each with the channel's last state and whether the shop completed the order) that
    are released at ``now``, with ``release`` saying why: ``completed`` (the shop has the order) first, else the
    channel's new state."""
    out: list[HeldFunds] = []
    for held, state, completed in open_held:
        if held.released_at is not None:
            continue
        if completed:
            out.append(replace(held, released_at=now, release="completed"))
        elif state in RELEASING_STATES:
            out.append(replace(held, released_at=now, release=state))
    return out
