"""Many lost orders found at once become one notification: the outbox payload that lists them by channel.

A reconcile round after an outage can find dozens of lost orders; one message each buries the operator (and hits
chat rate limits). The orders are still recorded one by one (each once); only the announcement is shared. Each
channel lists its first :data:`LIST_LIMIT` orders (each with its full lost-order payload, for a sink that shows
more) and how many more there are. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from monitor.models import LostOrder

__all__ = ["LIST_LIMIT", "lost_batch_key", "lost_batch_payload"]

#: Orders listed per channel in one message; the rest are counted (``+N more``).
LIST_LIMIT = 20


def lost_batch_key(found: Sequence[LostOrder]) -> str:
    """The outbox dedupe key of one batch (its orders are recorded once, so the batch is queued once)."""
    return f"lost-batch|{found[0].order_id}|{len(found)}"


def lost_batch_payload(found: Sequence[LostOrder], deadline: timedelta) -> dict[str, Any]:
    """``{"type": "lost_orders", "kind": "found", "count": n, "channels": [{"channel", "count", "orders"}]}``,
    channels in the order their first lost order came, each with its first :data:`LIST_LIMIT` orders (as
    :meth:`LostOrder.payload` has them)."""
    by_channel: dict[str, list[LostOrder]] = {}
    for lost in found:
        by_channel.setdefault(lost.channel, []).append(lost)
    channels = [{"channel": ch, "count": len(orders),
                 "orders": [o.payload("found", deadline) for o in orders[:LIST_LIMIT]]}
                for ch, orders in by_channel.items()]
    return {
        "type": "lost_orders",
        "kind": "found",
        "channel": found[0].channel if len(by_channel) == 1 else "",
        "count": len(found),
        "channels": channels,
        "deadline_s": deadline.total_seconds(),
        "at": max(o.found_at for o in found).isoformat(),
    }
