"""The Stripe client (PaymentIntents API): retrieve, create, search and cancel intents.

dujiaoka drives Stripe through the deprecated Sources + Charges API; paymon speaks the modern PaymentIntents
API, as the simulator (``monitor.sim.stripe``) serves it, with the helpers of ``monitor.protocols.stripe``.
Requests carry the secret key as a Bearer token and form-encoded parameters; a create carries an
``Idempotency-Key``, so sending it again with the same key and parameters answers with the same intent (how a
create whose answer was lost is found again).

Answers: Stripe does not sign responses (no ``bad_signature``). An error JSON ``{"error": {...}}`` with HTTP 401
is ``business_error`` ``invalid_api_key`` (the message, which shows part of the key, is not copied); HTTP 503 with
``type`` ``api_error`` is Stripe's "temporarily unavailable" answer, ``maintenance``; other 4xx errors are
``business_error`` with Stripe's ``code`` (or ``type``) and message; other 5xx and error bodies that are not
Stripe's JSON are ``http_error``; a 2xx body that is not the expected object is ``bad_response``. A 404
``resource_missing`` on a retrieve means "no such intent".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.clients.base import GatewayClient, ProbeContext, ProbeFailure, Reply, fetch, parse_json

__all__ = ["StripeClient", "intent_of"]


def _error(reply: Reply) -> dict[str, Any] | None:
    """Stripe's ``error`` object of a 4xx/5xx reply, or None if the body is not Stripe's error JSON."""
    try:
        doc = parse_json(Reply(200, reply.headers, reply.body))
    except ProbeFailure:
        return None
    err = doc.get("error")
    return err if isinstance(err, dict) else None


def _answer(reply: Reply, what: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The JSON object of a 2xx reply; None for a 404 ``resource_missing`` when ``missing_ok``; else the failure."""
    if reply.status < 400:
        return parse_json(reply)
    err = _error(reply)
    if err is None:
        raise ProbeFailure("http_error", f"{what}: HTTP {reply.status}", code=str(reply.status))
    code = str(err.get("code") or err.get("type") or reply.status)[:64]
    message = " ".join(str(err.get("message", "")).split())[:160]
    if reply.status == 401:
        raise ProbeFailure("business_error", f"{what}: HTTP 401 invalid API key ({err.get('type')})",
                           code="invalid_api_key")
    if reply.status == 404 and missing_ok and err.get("code") == "resource_missing":
        return None
    if reply.status == 503 and err.get("type") == "api_error":
        raise ProbeFailure("maintenance", f"{what}: HTTP 503 api_error: {message}", code="api_error")
    if reply.status >= 500:
        raise ProbeFailure("http_error", f"{what}: HTTP {reply.status} {code}: {message}", code=str(reply.status))
    raise ProbeFailure("business_error", f"{what}: HTTP {reply.status} {code}: {message}", code=code)


def _object(reply: Reply, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx reply, else the failure (a 404 included)."""
    doc = _answer(reply, what)
    if doc is None:  # pragma: no cover - only with missing_ok
        raise ProbeFailure("bad_response", f"{what}: no object in the answer")
    return doc


def intent_of(doc: Mapping[str, Any], what: str) -> tuple[str, str]:
    """(id, status) of a PaymentIntent object, else bad_response."""
    pi_id, status = doc.get("id"), doc.get("status")
    if doc.get("object") != "payment_intent" or not isinstance(pi_id, str) or not isinstance(status, str):
        raise ProbeFailure("bad_response", f"{what}: the answer is not a PaymentIntent")
    return pi_id, status


class StripeClient(GatewayClient):
    """The wire of a channel of ``kind: stripe`` (credentials: ``secret_key``, ``sk_live_...``/``sk_test_...``)."""

    kind = "stripe"
    needs = ("secret_key",)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['secret_key'].reveal()}"}

    async def retrieve(self, ctx: ProbeContext, pi_id: str, timeout: float) -> tuple[int, str | None]:
        """``GET v1/payment_intents/{id}``: the HTTP status and the intent's status, None for ``resource_missing``."""
        reply = await fetch(ctx.client, "GET", f"{self.base}v1/payment_intents/{pi_id}", timeout=timeout,
                            headers=self._headers())
        doc = _answer(reply, "retrieve", missing_ok=True)
        if doc is None:
            return reply.status, None
        found, status = intent_of(doc, "retrieve")
        if found != pi_id:
            raise ProbeFailure("bad_response", f"retrieve: asked for {pi_id}, got another intent")
        return reply.status, status

    async def create(self, ctx: ProbeContext, form: Mapping[str, str], idempotency_key: str,
                     timeout: float) -> dict[str, Any]:
        """``POST v1/payment_intents``: the created object (check it with :func:`intent_of`)."""
        headers = {**self._headers(), "Idempotency-Key": idempotency_key}
        reply = await fetch(ctx.client, "POST", self.base + "v1/payment_intents", timeout=timeout, data=form,
                            headers=headers)
        return _object(reply, "create")

    async def search(self, ctx: ProbeContext, query: str, timeout: float) -> list[dict[str, Any]]:
        """``GET v1/payment_intents/search?query=…`` (Stripe's search language, first page of up to 100): the
        PaymentIntent objects found (each checked with :func:`intent_of`)."""
        reply = await fetch(ctx.client, "GET", self.base + "v1/payment_intents/search", timeout=timeout,
                            params={"query": query, "limit": "100"}, headers=self._headers())
        doc = _object(reply, "search")
        data = doc.get("data")
        if doc.get("object") != "search_result" or not isinstance(data, list):
            raise ProbeFailure("bad_response", "search: the answer is not a search result")
        found = [item for item in data if isinstance(item, dict)]
        for item in found:
            intent_of(item, "search")
        return found

    async def cancel(self, ctx: ProbeContext, pi_id: str, timeout: float) -> None:
        """``POST v1/payment_intents/{id}/cancel`` (reason ``abandoned``); the failure unless it is ``canceled``."""
        reply = await fetch(ctx.client, "POST", f"{self.base}v1/payment_intents/{pi_id}/cancel",
                            timeout=timeout, data={"cancellation_reason": "abandoned"}, headers=self._headers())
        doc = _object(reply, f"cancel {pi_id}")
        _, status = intent_of(doc, f"cancel {pi_id}")
        if status != "canceled":
            raise ProbeFailure("bad_response", f"cancel {pi_id}: intent is {status}, not canceled")
