"""PayPal probes (OAuth client credentials + Orders v2): ``query`` shows an order, ``test_order`` creates one.

dujiaoka uses PayPal's v1 Payments API (protocols.md §6); paymon probes Orders v2, as the simulator
(``monitor.sim.paypal``) serves it, with the helpers of ``monitor.protocols.paypal``.

- Token: ``POST v1/oauth2/token`` (HTTP Basic ``client_id:client_secret``, ``grant_type=client_credentials``).
  The bearer token is cached on the adapter until 60 s (or a tenth of its life, if shorter) before its
  ``expires_in``; a 401 ``AUTHENTICATION_FAILURE`` on a later call (PayPal revoked or expired it early) drops it,
  and the call is retried once with a fresh token.
- ``query``: ``GET v2/checkout/orders/{id}`` for the last order this adapter created, else for the sentinel
  ``PAYMONPROBE000000``. The order with that id, or the 404 ``RESOURCE_NOT_FOUND`` error, is ``ok``.
- ``test_order``: ``POST v2/checkout/orders`` (intent ``CAPTURE``, ``probes.test_order.amount``, default 0.01,
  in USD, which every PayPal account accepts; a fresh ``PayPal-Request-Id``), then checks for the order id, status
  ``CREATED`` (or ``PAYER_ACTION_REQUIRED``) and an ``approve`` (or ``payer-action``) link. It is never approved
  nor captured. Orders v2 has no cancel for an order the buyer has not approved (it expires by itself), so
  ``probes.test_order.close`` has nothing to do here.

Outcomes: PayPal does not sign responses (no ``bad_signature``). ``invalid_client`` from the token endpoint is
``business_error`` (wrong credentials); a 503 ``SERVICE_UNAVAILABLE`` error is ``maintenance``; other errors in
PayPal's JSON with a 4xx status are ``business_error`` with PayPal's ``name`` (or OAuth ``error``) as the code
and its message and first ``issue`` in the detail; other 5xx replies are ``http_error``; a 2xx body without the
expected fields is ``bad_response``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from decimal import Decimal
from typing import Any

from monitor.probes.base import Observation, ProbeContext, ProbeFailure, Reply, base_url, fetch, parse_json
from monitor.protocols.paypal import format_amount

__all__ = ["CURRENCY", "SENTINEL", "PayPalAdapter"]

#: An order id no app has: PayPal must answer ``RESOURCE_NOT_FOUND``.
SENTINEL = "PAYMONPROBE000000"
#: The currency of test orders.
CURRENCY = "USD"
_DEFAULT_TIMEOUT = 10.0
_TOKEN_MARGIN_S = 60.0


def _left(deadline: float, timeout: float) -> float:
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise ProbeFailure("timeout", f"no complete answer within {timeout:g}s")
    return left


def _error_doc(reply: Reply) -> dict[str, Any] | None:
    try:
        return parse_json(Reply(200, reply.headers, reply.body))
    except ProbeFailure:
        return None


def _failure(reply: Reply, what: str) -> ProbeFailure:
    """The outcome of a reply with HTTP status >= 400."""
    doc = _error_doc(reply)
    name = (doc.get("name") or doc.get("error")) if doc is not None else None
    if doc is None or not isinstance(name, str) or not name:
        return ProbeFailure("http_error", f"{what}: HTTP {reply.status}", code=str(reply.status))
    message = str(doc.get("message") or doc.get("error_description") or "")
    details = doc.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("issue"):
        message += f" [{details[0]['issue']}]"
    text = f"{what}: HTTP {reply.status} {name}: {' '.join(message.split())[:160]}"
    if reply.status == 503 and name == "SERVICE_UNAVAILABLE":
        return ProbeFailure("maintenance", text, code=name)
    if reply.status >= 500:
        return ProbeFailure("http_error", text, code=str(reply.status))
    return ProbeFailure("business_error", text, code=name[:64])


class PayPalAdapter:
    """Probes for a channel of ``kind: paypal`` (credentials: ``client_id``, ``client_secret`` of a REST app)."""

    kind = "paypal"
    supports: tuple[str, ...] = ("query", "test_order")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.base = base_url(channel.endpoint)
        creds = channel.credentials
        if "client_id" not in creds or "client_secret" not in creds:
            raise ValueError(f"channel {channel.id}: paypal needs credentials client_id and client_secret")
        self.client_id = creds["client_id"]
        self.client_secret = creds["client_secret"]
        self._token: str | None = None
        self._token_until = 0.0  # time.monotonic() after which the cached token is not used
        #: The id of the last order this adapter created.
        self.last_order: str | None = None

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe not in self.supports:
            raise ProbeFailure("bad_response", f"probe {probe} is not supported for paypal")
        spec = self.channel.probes.query if probe == "query" else self.channel.probes.test_order
        timeout = spec.timeout.total_seconds() if spec is not None else _DEFAULT_TIMEOUT
        deadline = asyncio.get_running_loop().time() + timeout
        if probe == "query":
            return await self._query(ctx, deadline, timeout)
        amount = spec.amount if spec is not None else Decimal("0.01")
        return await self._test_order(ctx, amount, deadline, timeout)

    async def _access_token(self, ctx: ProbeContext, deadline: float, timeout: float) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        self._token = None
        pair = f"{self.client_id.reveal()}:{self.client_secret.reveal()}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii"), "Accept": "application/json"}
        reply = await fetch(ctx.client, "POST", self.base + "v1/oauth2/token", timeout=_left(deadline, timeout),
                            data={"grant_type": "client_credentials"}, headers=headers)
        if reply.status >= 400:
            raise _failure(reply, "oauth2/token")
        doc = parse_json(reply)
        token, life = doc.get("access_token"), doc.get("expires_in")
        if not isinstance(token, str) or not token or isinstance(life, bool) or not isinstance(life, int | float):
            raise ProbeFailure("bad_response", "oauth2/token: no access_token / expires_in in the answer")
        self._token = token
        self._token_until = time.monotonic() + max(0.0, life - min(_TOKEN_MARGIN_S, life / 10))
        return token

    async def _call(self, ctx: ProbeContext, method: str, path: str, deadline: float, timeout: float,
                    body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Reply:
        """One authorized call; a 401 AUTHENTICATION_FAILURE drops the cached token and is retried once."""
        for attempt in (1, 2):
            token = await self._access_token(ctx, deadline, timeout)
            hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
            content = None
            if body is not None:
                hdrs["Content-Type"] = "application/json"
                content = json.dumps(body).encode("utf-8")
            reply = await fetch(ctx.client, method, self.base + path, timeout=_left(deadline, timeout),
                                headers=hdrs, content=content)
            if reply.status == 401 and attempt == 1:
                doc = _error_doc(reply)
                if doc is not None and doc.get("name") == "AUTHENTICATION_FAILURE":
                    self._token = None
                    continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _query(self, ctx: ProbeContext, deadline: float, timeout: float) -> Observation:
        order_id = self.last_order or SENTINEL
        reply = await self._call(ctx, "GET", f"v2/checkout/orders/{order_id}", deadline, timeout)
        if reply.status == 404:
            doc = _error_doc(reply)
            if doc is not None and doc.get("name") == "RESOURCE_NOT_FOUND":
                return Observation("RESOURCE_NOT_FOUND", f"HTTP 404 RESOURCE_NOT_FOUND for {order_id}, as expected")
        if reply.status >= 400:
            raise _failure(reply, "show order")
        doc = parse_json(reply)
        status = doc.get("status")
        if doc.get("id") != order_id or not isinstance(status, str):
            raise ProbeFailure("bad_response", f"show order: no order {order_id} with a status in the answer")
        return Observation(status, f"HTTP {reply.status}, order {order_id} is {status}")

    async def _test_order(self, ctx: ProbeContext, amount: Decimal, deadline: float, timeout: float) -> Observation:
        value = format_amount(amount, CURRENCY)
        body = {"intent": "CAPTURE", "purchase_units": [{
            "reference_id": "paymon-probe", "custom_id": "paymon-probe-" + secrets.token_hex(8),
            "description": "paymon probe (never paid)", "amount": {"currency_code": CURRENCY, "value": value}}]}
        headers = {"PayPal-Request-Id": "paymon-probe-" + secrets.token_hex(16)}
        reply = await self._call(ctx, "POST", "v2/checkout/orders", deadline, timeout, body, headers)
        if reply.status >= 400:
            raise _failure(reply, "create order")
        doc = parse_json(reply)
        order_id, status, links = doc.get("id"), doc.get("status"), doc.get("links")
        if not isinstance(order_id, str) or not order_id.isalnum():
            raise ProbeFailure("bad_response", "create order: no order id in the answer")
        self.last_order = order_id
        if status not in ("CREATED", "PAYER_ACTION_REQUIRED"):
            raise ProbeFailure("bad_response", f"create order: {order_id} is {status!r}, expected CREATED")
        approve = [link.get("href") for link in links if isinstance(link, dict)
                   and link.get("rel") in ("approve", "payer-action")] if isinstance(links, list) else []
        if not approve or not isinstance(approve[0], str) or not approve[0].startswith(("http://", "https://")):
            raise ProbeFailure("bad_response", f"create order: {order_id} has no approve link")
        return Observation(status, f"created order {order_id} for {value} {CURRENCY}, {status}, approve link "
                                   "present; not cancellable (Orders v2), it expires unapproved")
