"""Delivers the notification outbox to its sinks: sent once, retried with backoff when a retry can help."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from monitor.errors import SinkError
from monitor.store import Store

__all__ = ["Sink", "deliver_outbox"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class Sink(Protocol):
    """A notification sink. ``send`` raises :class:`SinkError` (with ``retryable``) when it cannot deliver."""

    name: str

    def send(self, payload: Mapping[str, Any]) -> None: ...


def deliver_outbox(store: Store, sinks: Mapping[str, Sink], *, on_result: Any = None) -> int:
    """Send every due outbox item; returns how many were sent. ``on_result(sink, result)`` counts outcomes."""
    sent = 0
    for name, sink in sinks.items():
        for item in store.due_outbox(name):
            try:
                sink.send(item.payload)
            except SinkError as exc:
                if exc.retryable and item.attempts + 1 < MAX_ATTEMPTS:
                    delay = timedelta(seconds=min(2 ** item.attempts * 5, 600))
                    store.mark_retry(item.id, str(exc), store.clock.now() + delay)
                    result = "retried"
                else:
                    store.mark_failed(item.id, str(exc))
                    result = "failed"
                log.warning("notification %s via %s %s: %s", item.id, name, result, exc)
            else:
                store.mark_sent(item.id)
                sent += 1
                result = "sent"
            if on_result is not None:
                on_result(name, result)
    return sent
