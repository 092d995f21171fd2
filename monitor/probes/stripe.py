"""Stripe probes (PaymentIntents API): ``query`` retrieves an intent, ``test_order`` creates and cancels one.

dujiaoka drives Stripe through the deprecated Sources + Charges API (protocols.md §6); paymon probes the modern
PaymentIntents API, as the simulator (``monitor.sim.stripe``) serves it, with the helpers of
``monitor.protocols.stripe``. Requests carry the secret key as a Bearer token and form-encoded parameters.

- ``query``: ``GET v1/payment_intents/{id}`` for the last intent this adapter created, else for the sentinel
  ``pi_paymonprobe``. A PaymentIntent with that id, or Stripe's 404 ``resource_missing`` error (its JSON parsed
  although the HTTP status is 404), is ``ok``.
- ``test_order``: ``POST v1/payment_intents`` for the larger of ``probes.test_order.amount`` and Stripe's minimum
  charge in the probe currency (``cny``: the table in ``monitor.protocols.stripe`` has no CNY row, so its 50
  minor-unit floor, 0.50 CNY, applies; the default 0.01 is below it), then checks the intent's ``client_secret``
  and its status ``requires_payment_method``. With ``probes.test_order.close`` it is cancelled
  (``POST .../cancel``, reason ``abandoned``) in a ``finally``, on a deadline of its own, so an intent is not left
  open when the check failed midway; a failed cancel is named in the detail and, after an ``ok`` check, becomes
  the outcome.

Outcomes: Stripe does not sign responses (no ``bad_signature``). An error JSON ``{"error": {...}}`` with HTTP 401
is ``business_error`` ``invalid_api_key`` (the message, which shows part of the key, is not copied); HTTP 503 with
``type`` ``api_error`` is Stripe's "temporarily unavailable" answer, ``maintenance``; other 4xx errors are
``business_error`` with Stripe's ``code`` (or ``type``) and message; other 5xx and error bodies that are not
Stripe's JSON are ``http_error``; a 2xx body that is not the expected object is ``bad_response``.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from typing import Any

from monitor.probes.base import Observation, ProbeContext, ProbeFailure, Reply, base_url, fetch, parse_json
from monitor.protocols.stripe import from_minor_units, minimum_amount, to_minor_units

__all__ = ["CURRENCY", "SENTINEL", "StripeAdapter"]

#: An intent id no account has: Stripe must answer ``resource_missing``.
SENTINEL = "pi_paymonprobe"
#: The currency of test intents (dujiaoka's Stripe Alipay checkout charges in CNY, §6).
CURRENCY = "cny"
_DEFAULT_TIMEOUT = 10.0


def _left(deadline: float, timeout: float) -> float:
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise ProbeFailure("timeout", f"no complete answer within {timeout:g}s")
    return left


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


def _intent(doc: dict[str, Any], what: str) -> tuple[str, str]:
    """(id, status) of a PaymentIntent object, else bad_response."""
    pi_id, status = doc.get("id"), doc.get("status")
    if doc.get("object") != "payment_intent" or not isinstance(pi_id, str) or not isinstance(status, str):
        raise ProbeFailure("bad_response", f"{what}: the answer is not a PaymentIntent")
    return pi_id, status


class StripeAdapter:
    """Probes for a channel of ``kind: stripe`` (credentials: ``secret_key``, ``sk_live_...``/``sk_test_...``)."""

    kind = "stripe"
    supports: tuple[str, ...] = ("query", "test_order")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.base = base_url(channel.endpoint)
        if "secret_key" not in channel.credentials:
            raise ValueError(f"channel {channel.id}: stripe needs credentials secret_key")
        self.secret_key = channel.credentials["secret_key"]
        #: The id of the last PaymentIntent this adapter created.
        self.last_intent: str | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key.reveal()}"}

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe == "query":
            return await self._query(ctx)
        if probe == "test_order":
            return await self._test_order(ctx)
        raise ProbeFailure("bad_response", f"probe {probe} is not supported for stripe")

    async def _query(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.query
        timeout = spec.timeout.total_seconds() if spec is not None else _DEFAULT_TIMEOUT
        pi_id = self.last_intent or SENTINEL
        reply = await fetch(ctx.client, "GET", f"{self.base}v1/payment_intents/{pi_id}", timeout=timeout,
                            headers=self._headers())
        doc = _answer(reply, "retrieve", missing_ok=True)
        if doc is None:
            return Observation("resource_missing", f"HTTP 404 resource_missing for {pi_id}, as expected")
        found, status = _intent(doc, "retrieve")
        if found != pi_id:
            raise ProbeFailure("bad_response", f"retrieve: asked for {pi_id}, got another intent")
        return Observation(status, f"HTTP {reply.status}, intent {pi_id} is {status}")

    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = spec.timeout.total_seconds() if spec is not None else _DEFAULT_TIMEOUT
        wanted = to_minor_units(spec.amount if spec is not None else Decimal("0.01"), CURRENCY)
        amount = max(wanted, minimum_amount(CURRENCY)[0])
        close = spec.close if spec is not None else True
        deadline = asyncio.get_running_loop().time() + timeout
        form = {"amount": str(amount), "currency": CURRENCY, "description": "paymon probe (never paid)",
                "metadata[paymon_probe]": "1"}
        headers = {**self._headers(), "Idempotency-Key": "paymon-probe-" + secrets.token_hex(12)}
        created: str | None = None
        failure: ProbeFailure | None = None
        seen: Observation | None = None
        try:
            reply = await fetch(ctx.client, "POST", self.base + "v1/payment_intents", timeout=_left(deadline, timeout),
                                data=form, headers=headers)
            doc = _object(reply, "create")
            created, status = _intent(doc, "create")
            self.last_intent = created
            secret = doc.get("client_secret")
            if not isinstance(secret, str) or not secret.startswith(f"{created}_secret_"):
                raise ProbeFailure("bad_response", f"create: intent {created} has no client_secret")
            if status != "requires_payment_method":
                raise ProbeFailure("bad_response", f"create: intent {created} is {status}, expected "
                                                   "requires_payment_method")
            money = from_minor_units(amount, CURRENCY)
            seen = Observation(status, f"created intent {created} for {money} {CURRENCY}, {status}")
        except ProbeFailure as exc:
            failure = exc
        finally:
            closed = await self._cancel(ctx, created, timeout) if created is not None and close else None
        if failure is not None:
            if closed is not None:
                failure.detail += f"; {closed.detail}"
            raise failure
        if seen is None:  # pragma: no cover - the try either sets seen or a failure
            raise ProbeFailure("bad_response", "create: no result")
        if closed is not None:
            raise ProbeFailure(closed.outcome, f"{seen.detail}; {closed.detail}", code=closed.code)
        suffix = ", cancelled" if close else ", left open (close: false)"
        return Observation(seen.code, seen.detail + suffix)

    async def _cancel(self, ctx: ProbeContext, pi_id: str, timeout: float) -> ProbeFailure | None:
        """Cancel the intent (on a deadline of its own); the failure if that did not work, else None."""
        try:
            reply = await fetch(ctx.client, "POST", f"{self.base}v1/payment_intents/{pi_id}/cancel",
                                timeout=timeout, data={"cancellation_reason": "abandoned"}, headers=self._headers())
            doc = _object(reply, f"cancel {pi_id}")
            _, status = _intent(doc, f"cancel {pi_id}")
            if status != "canceled":
                raise ProbeFailure("bad_response", f"cancel {pi_id}: intent is {status}, not canceled")
        except ProbeFailure as exc:
            return ProbeFailure(exc.outcome, f"cancel failed: {exc.detail}", code=exc.code)
        return None
