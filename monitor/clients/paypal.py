"""The PayPal client (OAuth client credentials + Orders v2): show and create orders.

dujiaoka uses PayPal's v1 Payments API; paymon speaks Orders v2, as the simulator (``monitor.sim.paypal``)
serves it, with the helpers of ``monitor.protocols.paypal``.

Token: ``POST v1/oauth2/token`` (HTTP Basic ``client_id:client_secret``, ``grant_type=client_credentials``). The
bearer token is cached on the client until 60 s (or a tenth of its life, if shorter) before its ``expires_in``; a
401 ``AUTHENTICATION_FAILURE`` on a later call (PayPal revoked or expired it early) drops it, and the call is
retried once with a fresh token.

Answers: PayPal does not sign responses (no ``bad_signature``). ``invalid_client`` from the token endpoint is
``business_error`` (wrong credentials); a 503 ``SERVICE_UNAVAILABLE`` error is ``maintenance``; other errors in
PayPal's JSON with a 4xx status are ``business_error`` with PayPal's ``name`` (or OAuth ``error``) as the code
and its message and first ``issue`` in the detail; other 5xx replies are ``http_error``; a 2xx body without the
expected fields is ``bad_response``. A 404 ``RESOURCE_NOT_FOUND`` on a show means "no such order".
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from monitor.clients.base import Deadline, GatewayClient, ProbeContext, ProbeFailure, Reply, fetch, parse_json
from monitor.config.channels import ChannelConfig

__all__ = ["PayPalClient"]

_TOKEN_MARGIN_S = 60.0


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


class PayPalClient(GatewayClient):
    """The wire of a channel of ``kind: paypal`` (credentials: ``client_id``, ``client_secret`` of a REST app)."""

    kind = "paypal"
    needs = ("client_id", "client_secret")

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        self._token: str | None = None
        self._token_until = 0.0  # time.monotonic() after which the cached token is not used

    async def _access_token(self, ctx: ProbeContext, deadline: Deadline) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        self._token = None
        pair = f"{self.credentials['client_id'].reveal()}:{self.credentials['client_secret'].reveal()}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii"), "Accept": "application/json"}
        reply = await fetch(ctx.client, "POST", self.base + "v1/oauth2/token", timeout=deadline.left(),
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

    async def _call(self, ctx: ProbeContext, method: str, path: str, deadline: Deadline,
                    body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Reply:
        """One authorized call; a 401 AUTHENTICATION_FAILURE drops the cached token and is retried once."""
        for attempt in (1, 2):
            token = await self._access_token(ctx, deadline)
            hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
            content = None
            if body is not None:
                hdrs["Content-Type"] = "application/json"
                content = json.dumps(body).encode("utf-8")
            reply = await fetch(ctx.client, method, self.base + path, timeout=deadline.left(),
                                headers=hdrs, content=content)
            if reply.status == 401 and attempt == 1:
                doc = _error_doc(reply)
                if doc is not None and doc.get("name") == "AUTHENTICATION_FAILURE":
                    self._token = None
                    continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def show_order(self, ctx: ProbeContext, order_id: str, deadline: Deadline) -> tuple[int, str | None]:
        """``GET v2/checkout/orders/{id}``: the HTTP status and the order's status, None for ``RESOURCE_NOT_FOUND``."""
        reply = await self._call(ctx, "GET", f"v2/checkout/orders/{order_id}", deadline)
        if reply.status == 404:
            doc = _error_doc(reply)
            if doc is not None and doc.get("name") == "RESOURCE_NOT_FOUND":
                return reply.status, None
        if reply.status >= 400:
            raise _failure(reply, "show order")
        doc = parse_json(reply)
        status = doc.get("status")
        if doc.get("id") != order_id or not isinstance(status, str):
            raise ProbeFailure("bad_response", f"show order: no order {order_id} with a status in the answer")
        return reply.status, status

    async def create_order(self, ctx: ProbeContext, body: dict[str, Any], request_id: str,
                           deadline: Deadline) -> dict[str, Any]:
        """``POST v2/checkout/orders`` with a ``PayPal-Request-Id``; the created order object."""
        reply = await self._call(ctx, "POST", "v2/checkout/orders", deadline, body,
                                 {"PayPal-Request-Id": request_id})
        if reply.status >= 400:
            raise _failure(reply, "create order")
        return parse_json(reply)
