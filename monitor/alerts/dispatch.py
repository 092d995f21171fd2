"""Delivers the notification outbox to its sinks: sent once, retried with backoff when a retry can help."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitor.errors import SinkError
from monitor.store import OutboxItem, Store

__all__ = ["Sink", "deliver_in_order", "deliver_outbox"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class Sink(Protocol):
    """A notification sink. ``send`` raises :class:`SinkError` (with ``retryable``) when it cannot deliver."""

    name: str

    def send(self, payload: Mapping[str, Any]) -> None: ...


def backoff(attempts: int) -> timedelta:
    """How long to wait before the next attempt after ``attempts`` failed ones: 5 s doubling, at most 10 min."""
    return timedelta(seconds=min(2 ** min(attempts, 16) * 5, 600))


def _batches(items: list[OutboxItem], group_wait: timedelta, now: datetime) -> list[list[OutboxItem]]:
    """Due items in sending order; with ``group_wait``, one batch per channel, held until its oldest item has
    waited ``group_wait`` (so what else fires on that channel meanwhile joins the same message)."""
    if group_wait <= timedelta(0):
        return [[item] for item in items]
    by_channel: dict[str, list[OutboxItem]] = {}
    for item in items:
        by_channel.setdefault(str(item.payload.get("channel", "")), []).append(item)
    out = []
    for batch in by_channel.values():
        oldest = min((i.created_at for i in batch if i.created_at is not None), default=now)
        if now - oldest >= group_wait or any(i.attempts for i in batch):
            out.append(batch)
    return sorted(out, key=lambda b: b[0].id)


def deliver_outbox(store: Store, sinks: Mapping[str, Sink], *, on_result: Any = None,
                   group_wait: timedelta = timedelta(0)) -> int:
    """Send every due outbox item; returns how many were sent. ``on_result(sink, result)`` counts outcomes.

    With ``group_wait``, notifications about one channel are sent as one grouped message.
    """
    sent = 0
    now = store.clock.now()
    for name, sink in sinks.items():
        for batch in _batches(store.due_outbox(name), group_wait, now):
            payload = batch[0].payload if len(batch) == 1 else {
                "type": "group", "channel": batch[0].payload.get("channel"), "at": batch[0].payload.get("at"),
                "items": [i.payload for i in batch]}
            attempts = max(i.attempts for i in batch)
            try:
                sink.send(payload)
            except SinkError as exc:
                for item in batch:
                    if exc.retryable and attempts + 1 < MAX_ATTEMPTS:
                        store.mark_retry(item.id, str(exc), now + backoff(attempts))
                        result = "retried"
                    else:
                        store.mark_failed(item.id, str(exc))
                        result = "failed"
                log.warning("notification %s via %s %s: %s", ",".join(str(i.id) for i in batch), name, result,
                            exc)
            else:
                for item in batch:
                    store.mark_sent(item.id)
                sent += len(batch)
                result = "sent"
            if on_result is not None:
                for _ in batch:
                    on_result(name, result)
    return sent


def deliver_in_order(store: Store, sinks: Mapping[str, Sink], *, on_result: Any = None, limit: int = 100) -> int:
    """Send each sink's queue strictly in order, one item at a time (up to ``limit`` per sink); returns how many
    were sent. A failed item is retried with backoff and never given up: everything queued behind it waits, so
    the receiver sees every item once, in the order queued (weight changes to a webhook)."""
    sent = 0
    for name, sink in sinks.items():
        for _ in range(limit):
            item = store.next_in_order(name)
            if item is None:
                break
            try:
                sink.send(item.payload)
            except SinkError as exc:
                store.mark_retry(item.id, str(exc), store.clock.now() + backoff(item.attempts))
                log.warning("%s: item %d not delivered (attempt %d, retried with backoff; later ones wait): %s",
                            name, item.id, item.attempts + 1, exc)
                if on_result is not None:
                    on_result(name, "retried")
                break
            store.mark_sent(item.id)
            sent += 1
            if on_result is not None:
                on_result(name, "sent")
    return sent
