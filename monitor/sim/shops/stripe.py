"""The shop side of Stripe (``stripe``) with the modern PaymentIntents API and a signed webhook.

dujiaoka itself pays through the deprecated Sources + Charges flow and learns of a payment only when the buyer's
browser comes back (no webhooks), so a closed tab is a lost order. The simulated shop does what paymon's
probes and a modern shop do instead: opening an order is ``POST v1/payment_intents`` (Bearer secret key, the amount
in fen, ``currency=cny``, ``metadata[order_id]``) and the reference the buyer pays is the ``pi_`` id; payment is
learned of only through the ``payment_intent.succeeded`` webhook at ``POST /pay/stripe/webhook``, whose
``Stripe-Signature`` is checked with the endpoint's signing secret (stale or invalid: logged unverified, HTTP 400).

A channel whose simulated account has a webhook signing secret is wired to this shop when the shop registers it
(:meth:`StripeShop.credentials_of` points the account's webhook endpoint at the shop, as a merchant does in the
Dashboard). A channel without one never tells the shop anything: its paid orders stay ``created`` +
``pay_redirect`` in the log while the gateway's ground truth says paid, which is the lost-order (掉单) mode.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.protocols.stripe import from_minor_units, to_minor_units, verify_webhook
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["CURRENCY", "NOTIFY_PATH", "SUCCEEDED_EVENT", "StripeShop"]

NOTIFY_PATH = "/pay/stripe/webhook"
#: The shop sells in CNY; Stripe takes it in fen.
CURRENCY = "cny"
SUCCEEDED_EVENT = "payment_intent.succeeded"
#: How old a webhook's signed timestamp may be (the official libraries' default), against replays.
TOLERANCE_S = 300


class StripeShop:
    """Stripe for the simulated shop. Channel credentials: ``api_key`` (``sk_...``) and, when the account sends
    webhooks, ``webhook_secret`` (``whsec_...``)."""

    kind = "stripe"
    notify_path = NOTIFY_PATH
    notify_methods = ("POST",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Create the PaymentIntent; return its ``pi_`` id."""
        form = {
            "amount": str(to_minor_units(order.amount, CURRENCY)),
            "currency": CURRENCY,
            "description": order.order_id,
            "metadata[order_id]": order.order_id,
        }
        headers = {"Authorization": f"Bearer {channel.credentials['api_key']}", "Idempotency-Key": order.order_id}
        reply = await self.shop.client.post(channel.endpoint + "v1/payment_intents", data=form, headers=headers)
        body = _json(reply)
        if reply.status_code != 200:
            raise OpenFailed(_failure(reply.status_code, body))
        if body is None:
            raise OpenFailed("bad_response: not JSON")
        pi_id = body.get("id")
        if not isinstance(pi_id, str) or not pi_id.startswith("pi_"):
            raise OpenFailed("bad_response: no payment intent id")
        return pi_id

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        """The account's secret key and, if it has one, its webhook signing secret. An account with a signing
        secret but no webhook endpoint yet gets this shop's webhook URL (the shop must be started for that)."""
        channel = gateway.channel(channel_id)
        creds = {"api_key": channel.api_key}
        if channel.webhook_secret:
            creds["webhook_secret"] = channel.webhook_secret
            if channel.webhook_url is None:
                try:
                    channel.webhook_url = self.shop.notify_url_for(self.kind)
                except RuntimeError:
                    raise RuntimeError(f"start the shop before registering stripe channel {channel_id!r}: its "
                                       "webhook endpoint must point at the running shop") from None
        return creds

    async def notify(self, request: Request) -> Response:
        """One webhook delivery: verified ``payment_intent.succeeded`` events complete their order (HTTP 200, also
        for a repeat); a bad signature is logged unverified and refused with 400; other verified events are
        acknowledged and ignored."""
        payload = await request.body()
        try:
            event = json.loads(payload)
        except ValueError:
            return _reply(400, "body is not JSON")
        data = event.get("data") if isinstance(event, dict) else None
        intent = data.get("object") if isinstance(data, dict) else None
        metadata = intent.get("metadata") if isinstance(intent, dict) else None
        order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
        order = self.shop.order(order_id) if isinstance(order_id, str) else None
        channel = self.shop.channels.get(order.channel) if order is not None else None
        if order is None or channel is None or channel.kind != self.kind or not isinstance(intent, dict):
            return _reply(400, "unknown order")
        assert isinstance(event, dict)
        secret = channel.credentials.get("webhook_secret", "")
        now = int(self.shop.clock.now().timestamp())  # the shop's "now", which a FixedClock can hold still
        verified = bool(secret) and verify_webhook(payload, request.headers.get("stripe-signature", ""), secret,
                                                   now=now, tolerance_s=TOLERANCE_S)
        pi_id = intent.get("id") if isinstance(intent.get("id"), str) else None
        if verified and (event.get("type") != SUCCEEDED_EVENT or intent.get("status") != "succeeded"):
            return _reply(200)  # Stripe wants a 2xx for every event an endpoint receives
        result = self.shop.callback(order, verified=verified, trade_no=pi_id,
                                    amount=_amount(intent) if verified else None,
                                    paid_at=_paid_at(event.get("created")) if verified else None)
        if result in ("completed", "already_completed"):
            return _reply(200)
        return _reply(400, result.replace("_", " "))


def _json(reply: httpx.Response) -> dict[str, Any] | None:
    try:
        body = reply.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _failure(status: int, body: dict[str, Any] | None) -> str:
    """``OpenFailed``'s reason for a non-200 answer: Stripe's error object when there is one (``api_error`` on a
    5xx is Stripe being unavailable), else the bare status."""
    error = body.get("error") if body is not None else None
    if not isinstance(error, dict):
        return f"http_error: {status}"
    kind = str(error.get("type", ""))
    outcome = "maintenance" if status >= 500 and kind == "api_error" else "business_error"
    return f"{outcome}: {status} {error.get('code') or kind} {error.get('message', '')}".rstrip()


def _amount(intent: dict[str, Any]) -> Decimal | None:
    """What the buyer paid, in CNY; None (an amount mismatch) when the intent is in another currency."""
    received, currency = intent.get("amount_received"), intent.get("currency")
    if not isinstance(received, int) or currency != CURRENCY:
        return None
    return from_minor_units(received, CURRENCY)


def _paid_at(created: object) -> str | None:
    """The event's creation time (the moment the intent succeeded) as ISO 8601 UTC."""
    if not isinstance(created, int):
        return None
    return datetime.fromtimestamp(created, UTC).isoformat()


def _reply(status: int, error: str | None = None) -> Response:
    return JSONResponse({"received": True} if error is None else {"error": error}, status_code=status)
