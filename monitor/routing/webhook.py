"""The webhook weight sink: every weight change POSTed as signed JSON to the shop's URL.

Nothing is written at the routing stage: the change is queued in the outbox in the transaction that records it
(``RoutingFacet.save_routing``), and :func:`monitor.alerts.dispatch.deliver_in_order` hands it to :meth:`send`,
one at a time and in order, retrying with backoff until the receiver answers 2xx. A crash after the receiver's
2xx but before paymon records it repeats that one delivery; ``channel`` + ``at`` + ``new`` identify a change.

The signature: ``X-Paymon-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`` with
``X-Paymon-Timestamp: <unix seconds>``, so a receiver can also refuse old (replayed) requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from monitor.clock import Clock
from monitor.config import WebhookSink
from monitor.errors import SinkError
from monitor.secret import Secret

__all__ = ["FIELDS", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "QueuedWebhook", "WebhookWeightSink", "body", "sign",
           "webhook_sink"]

SIGNATURE_HEADER = "X-Paymon-Signature"
TIMESTAMP_HEADER = "X-Paymon-Timestamp"
#: The keys of the JSON body, in this order.
FIELDS = ("channel", "old", "new", "reason", "rule", "at")


def body(payload: Mapping[str, Any]) -> bytes:
    """The request body for a queued weight change: exactly :data:`FIELDS`, compact UTF-8 JSON."""
    return json.dumps({k: payload.get(k) for k in FIELDS}, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, raw: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body`` under ``secret``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookWeightSink:
    """POSTs weight changes to one URL. ``name`` is its outbox queue (``webhook:<config name>``)."""

    kind = "webhook"

    def __init__(self, url: str, secret: Secret, *, clock: Clock, name: str = "webhook:main",
                 timeout: float = 5.0, client: httpx.Client | None = None) -> None:
        self.name = name
        self._url = url
        self._secret = secret
        self._clock = clock
        self._host = urlsplit(url).hostname or "?"  # errors name the host only: a URL path may hold a token
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)

    @classmethod
    def from_config(cls, cfg: WebhookSink, *, clock: Clock) -> WebhookWeightSink:
        return cls(cfg.url, cfg.secret, clock=clock, name=f"webhook:{cfg.name}",
                   timeout=cfg.timeout.total_seconds())

    def send(self, payload: Mapping[str, Any]) -> None:
        """Deliver one change; a 2xx means the shop applied it. Anything else raises a retryable
        :class:`SinkError` (the outbox keeps the change and everything after it until this one lands)."""
        raw = body(payload)
        stamp = str(int(self._clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self._secret.reveal(), stamp, raw),
            "User-Agent": "paymon-webhook",
        }
        try:
            resp = self._client.post(self._url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise SinkError(f"{self.name} ({self._host}): {type(exc).__name__}", retryable=True) from None
        if not 200 <= resp.status_code < 300:
            raise SinkError(f"{self.name} ({self._host}) answered HTTP {resp.status_code}", retryable=True)

    def close(self) -> None:
        self._client.close()


class QueuedWebhook:
    """The webhook as the routing stage sees it (:class:`~monitor.routing.base.WeightSink`): write-only, and
    every weight is there as soon as it is decided, because the change it carries was queued in the outbox with
    the decision; delivery (:class:`WebhookWeightSink`) is the outbox's business, in order, until a 2xx."""

    readable = False
    switch = False

    def __init__(self, key: str) -> None:
        self.key = key

    def read(self) -> dict[str, int]:
        raise SinkError(f"{self.key} cannot be read", retryable=False)

    def apply(self, weights: Mapping[str, int], now: datetime) -> dict[str, str]:
        return {}

    def close(self) -> None:
        """Nothing to release here: the outbox's sender owns the connection."""


def webhook_sink(sink: WebhookSink, cfg: object, store: object) -> QueuedWebhook:
    """The ``webhook`` sink of the routing config (the sink registry's factory)."""
    return QueuedWebhook(f"webhook:{sink.name}")
