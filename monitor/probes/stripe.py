"""Stripe probes (PaymentIntents API): ``query`` retrieves an intent, ``test_order`` creates and cancels one.

Every call goes through :class:`~monitor.clients.stripe.StripeClient` (the PaymentIntents API the simulator
serves, protocols.md §6; the secret key as a Bearer token).

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

Outcomes: the client's (no ``bad_signature``; HTTP 401 is ``business_error`` ``invalid_api_key``, 503
``api_error`` is ``maintenance``, other 4xx ``business_error``, other 5xx ``http_error``); a 2xx body that is
not the expected object is ``bad_response``.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from monitor.clients.stripe import StripeClient, intent_of
from monitor.probes.base import Observation, ProbeAdapter, ProbeContext, ProbeFailure, handles, probe_timeout
from monitor.protocols.stripe import from_minor_units, minimum_amount, to_minor_units

__all__ = ["CURRENCY", "SENTINEL", "StripeAdapter"]

#: An intent id no account has: Stripe must answer ``resource_missing``.
SENTINEL = "pi_paymonprobe"
#: The currency of test intents (dujiaoka's Stripe Alipay checkout charges in CNY, §6).
CURRENCY = "cny"
_DEFAULT_TIMEOUT = 10.0


class StripeAdapter(ProbeAdapter[StripeClient]):
    """Probes for a channel of ``kind: stripe`` (credentials: ``secret_key``, ``sk_live_...``/``sk_test_...``)."""

    kind = "stripe"
    client_class = StripeClient
    #: The id of the last PaymentIntent this adapter created.
    last_intent: str | None = None

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.query, _DEFAULT_TIMEOUT)
        pi_id = self.last_intent or SENTINEL
        status_code, status = await self.client.retrieve(ctx, pi_id, timeout)
        if status is None:
            return Observation("resource_missing", f"HTTP 404 resource_missing for {pi_id}, as expected")
        return Observation(status, f"HTTP {status_code}, intent {pi_id} is {status}")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = probe_timeout(spec, _DEFAULT_TIMEOUT)
        wanted = to_minor_units(spec.amount if spec is not None else Decimal("0.01"), CURRENCY)
        amount = max(wanted, minimum_amount(CURRENCY)[0])
        close = spec.close if spec is not None else True
        form = {"amount": str(amount), "currency": CURRENCY, "description": "paymon probe (never paid)",
                "metadata[paymon_probe]": "1"}
        idempotency_key = "paymon-probe-" + secrets.token_hex(12)
        created: str | None = None
        failure: ProbeFailure | None = None
        seen: Observation | None = None
        try:
            doc = await self.client.create(ctx, form, idempotency_key, timeout)
            created, status = intent_of(doc, "create")
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
            await self.client.cancel(ctx, pi_id, timeout)
        except ProbeFailure as exc:
            return exc.prefixed("cancel failed")
        return None
