"""The shop side of PayPal (``paypal``) with OAuth client credentials and Orders v2.

dujiaoka uses the v1 Payments API and completes an order only when the buyer's browser comes back to its return
URL, where it executes the payment; its ``notify_url`` only logs. The simulated shop keeps that shape with the
modern API paymon's probes use: opening an order is an access token (``POST v1/oauth2/token``, cached per channel
until shortly before it expires) and ``POST v2/checkout/orders`` (intent ``CAPTURE``, ``invoice_id`` = the shop's
order id, the amount in CNY, ``application_context.return_url`` = the shop's return route); the reference the
buyer approves is PayPal's order id. The buyer's return, ``GET /pay/paypal/return_url?token=<id>&PayerID=...``,
is the shop's only notify: it captures the order (``POST v2/checkout/orders/{id}/capture``) and the capture
succeeding (``COMPLETED``) is what "verified" means; the order is then completed with the captured amount and the
browser is sent on to the order page (302). A buyer who approves and never comes back leaves no callback at all,
a lost order (掉单). A capture PayPal refuses is answered 400, one that fails on the way (HTTP error, 5xx, broken body)
502; both are logged unverified and complete nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from html import escape
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from monitor.protocols.paypal import format_amount
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["CURRENCY", "NOTIFY_PATH", "PayPalShop"]

NOTIFY_PATH = "/pay/paypal/return_url"
#: The shop sells in CNY, which the REST APIs accept with two decimals.
CURRENCY = "CNY"
#: A cached access token is replaced this long (at most half its life) before PayPal says it expires.
TOKEN_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class _Capture:
    """What capturing an order came to: ``verified`` with the captured amount and time, or why not."""

    verified: bool
    amount: Decimal | None = None
    paid_at: str | None = None
    #: PayPal answered and refused (400 to the buyer) rather than the call failing on the way (502).
    refused: bool = False


class PayPalShop:
    """PayPal for the simulated shop. Channel credentials: ``client_id``, ``client_secret`` (the REST app's)."""

    kind = "paypal"
    notify_path = NOTIFY_PATH
    notify_methods = ("GET",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: PayPal order id -> shop order id: PayPal replaces the return URL's query with ``token``/``PayerID``.
        self._orders: dict[str, str] = {}

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Create the PayPal order; return its id (what the buyer approves)."""
        token = await self._token(channel)
        body = {
            "intent": "CAPTURE",
            "purchase_units": [{
                "invoice_id": order.order_id,
                "description": order.order_id,
                "amount": {"currency_code": CURRENCY, "value": format_amount(order.amount, CURRENCY)},
            }],
            "application_context": {
                "return_url": self.shop.notify_url_for(self.kind),
                "cancel_url": f"{self.shop.base_url}/detail-order-sn/{order.order_id}",
                "user_action": "PAY_NOW",
                "shipping_preference": "NO_SHIPPING",
            },
        }
        reply = await self.shop.client.post(
            channel.endpoint + "v2/checkout/orders", json=body,
            headers={"Authorization": f"Bearer {token}", "PayPal-Request-Id": f"{order.order_id}-create"},
        )
        created = _json(reply)
        if reply.status_code == 401:
            self._tokens.pop(channel.id, None)  # revoked or expired early: the next order fetches a new one
        if reply.status_code not in (200, 201):
            raise OpenFailed(_failure(reply.status_code, created))
        if created is None:
            raise OpenFailed("bad_response: not JSON")
        paypal_id = created.get("id")
        if not isinstance(paypal_id, str) or not paypal_id:
            raise OpenFailed("bad_response: no order id")
        links = created.get("links")
        for link in links if isinstance(links, list) else ():
            if isinstance(link, dict) and link.get("rel") in ("approve", "payer-action"):
                order.payurl = str(link.get("href") or "") or None
        self._orders[paypal_id] = order.order_id
        return paypal_id

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        channel = gateway.channel(channel_id)
        return {"client_id": channel.client_id, "client_secret": channel.client_secret}

    async def notify(self, request: Request) -> Response:
        """The buyer is back from PayPal: capture, report it with ``Shop.callback``, send the browser on."""
        paypal_id = request.query_params.get("token", "")
        order = self.shop.order(self._orders.get(paypal_id, ""))
        channel = self.shop.channels.get(order.channel) if order is not None else None
        if order is None or channel is None or channel.kind != self.kind:
            return _page(400, "Unknown order.")
        capture = await self._capture(channel, order, paypal_id)
        result = self.shop.callback(order, verified=capture.verified, trade_no=paypal_id, amount=capture.amount,
                                    paid_at=capture.paid_at)
        if result in ("completed", "already_completed"):
            return RedirectResponse(f"{self.shop.base_url}/detail-order-sn/{order.order_id}", status_code=302)
        if result == "bad_signature":
            return _page(400 if capture.refused else 502, "The payment could not be confirmed.")
        return _page(500, "The order could not be completed.")  # completedOrder() threw (amount mismatch)

    # ---- PayPal calls ------------------------------------------------------------------------------------------

    async def _token(self, channel: ShopChannel) -> str:
        """A valid access token for the channel's app: the cached one, or a new one (one request at a time)."""
        async with self._locks.setdefault(channel.id, asyncio.Lock()):
            now = self.shop.clock.now()
            cached = self._tokens.get(channel.id)
            if cached is not None and cached[1] > now:
                return cached[0]
            creds = channel.credentials
            reply = await self.shop.client.post(channel.endpoint + "v1/oauth2/token",
                                                auth=(creds["client_id"], creds["client_secret"]),
                                                data={"grant_type": "client_credentials"})
            body = _json(reply)
            if reply.status_code != 200:
                raise OpenFailed(_failure(reply.status_code, body))
            if body is None:
                raise OpenFailed("bad_response: not JSON")
            token, expires_in = body.get("access_token"), body.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
                raise OpenFailed("bad_response: no access_token")
            life = float(expires_in) - min(TOKEN_MARGIN_S, float(expires_in) / 2)
            self._tokens[channel.id] = (token, now + timedelta(seconds=life))
            return token

    async def _capture(self, channel: ShopChannel, order: ShopOrder, paypal_id: str) -> _Capture:
        """Capture the order (idempotently, per ``PayPal-Request-Id``); an order captured before is read back."""
        url = f"{channel.endpoint}v2/checkout/orders/{paypal_id}"
        try:
            token = await self._token(channel)
            auth = {"Authorization": f"Bearer {token}"}
            reply = await self.shop.client.post(url + "/capture", json={},
                                                headers={**auth, "PayPal-Request-Id": f"{order.order_id}-capture"})
            body = _json(reply)
            if reply.status_code == 422 and _issue(body) == "ORDER_ALREADY_CAPTURED":
                reply = await self.shop.client.get(url, headers=auth)
                body = _json(reply)
        except (OpenFailed, httpx.HTTPError):
            return _Capture(False)
        if reply.status_code == 401:
            self._tokens.pop(channel.id, None)
        if reply.status_code not in (200, 201) or body is None:
            return _Capture(False, refused=body is not None and 400 <= reply.status_code < 500
                            and reply.status_code != 401)
        return _captured(body, order.order_id)


def _captured(body: dict[str, Any], order_id: str) -> _Capture:
    """A COMPLETED order's capture of ``order_id``: its amount (None when not in CNY) and time."""
    units = body.get("purchase_units")
    unit = units[0] if isinstance(units, list) and units and isinstance(units[0], dict) else {}
    payments = unit.get("payments")
    captures = payments.get("captures") if isinstance(payments, dict) else None
    done = [c for c in captures if isinstance(c, dict) and c.get("status") == "COMPLETED"] \
        if isinstance(captures, list) else []
    if body.get("status") != "COMPLETED" or unit.get("invoice_id") != order_id or not done:
        return _Capture(False, refused=True)
    money = done[0].get("amount")
    amount = None
    if isinstance(money, dict) and money.get("currency_code") == CURRENCY:
        try:
            amount = Decimal(str(money.get("value"))).quantize(Decimal("0.01"))
        except InvalidOperation:
            amount = None
    return _Capture(True, amount, _paid_at(done[0].get("create_time")))


def _paid_at(text: object) -> str | None:
    """PayPal's ``create_time`` (``2026-11-26T03:12:00Z``) as ISO 8601 with ``+00:00``."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return None


def _json(reply: httpx.Response) -> dict[str, Any] | None:
    try:
        body = reply.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _issue(body: dict[str, Any] | None) -> str | None:
    details = body.get("details") if body is not None else None
    first = details[0] if isinstance(details, list) and details else None
    return str(first.get("issue")) if isinstance(first, dict) else None


def _failure(status: int, body: dict[str, Any] | None) -> str:
    """``OpenFailed``'s reason for a non-2xx answer: PayPal's error name and first issue (or OAuth's ``error``);
    ``SERVICE_UNAVAILABLE`` is maintenance; without an error body, the bare status."""
    if body is not None and isinstance(body.get("name"), str):
        name = body["name"]
        outcome = "maintenance" if name == "SERVICE_UNAVAILABLE" else "business_error"
        return f"{outcome}: {status} {name} {_issue(body) or ''}".rstrip()
    if body is not None and isinstance(body.get("error"), str):
        return f"business_error: {status} {body['error']} {body.get('error_description', '')}".rstrip()
    return f"http_error: {status}"


def _page(status: int, text: str) -> Response:
    return HTMLResponse(f"<!DOCTYPE html><html><body><p>{escape(text)}</p></body></html>", status_code=status)
