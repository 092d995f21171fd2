"""A simulated PayPal REST app per channel: OAuth client credentials and Orders v2, on loopback.

Serves ``/{channel}/v1/oauth2/token``, ``/{channel}/v2/checkout/orders`` (create), ``.../orders/{id}`` (show),
``.../orders/{id}/capture``, the buyer's approval page ``/{channel}/checkoutnow?token={id}``, and for webhook
verification ``/{channel}/v1/notifications/verify-webhook-signature`` and the signing certificate under
``/{channel}/v1/notifications/certs/``. Tokens expire after ``token_ttl_s``; errors use PayPal's JSON; a repeated
``PayPal-Request-Id`` replays the first answer. dujiaoka uses the v1 Payments API;
paymon's probes and this simulator use Orders v2.

The buyer (:meth:`PayPalGateway.buyer_visits`) approves an order with the channel's pay probability. Approval is
what the simulator counts as *paid*: the buyer has authorized the money, and whether the shop then captures it is
exactly the lost-order (掉单) question — dujiaoka only completes an order when the buyer's browser comes
back to its return URL. So after approval the buyer returns (a GET of ``return_url?token=ID&PayerID=...``) with
the channel's ``return_probability``; a shop that captures there gets COMPLETED, and a buyer who never returns
leaves the order APPROVED and uncaptured. A channel with a ``webhook_url`` also gets a signed
``CHECKOUT.ORDER.APPROVED`` webhook, retried until a 2xx. Ground truth's callback fields cover both deliveries.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import re
import string
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols.paypal import (
    PAID_STATUSES,
    RequestIssue,
    check_order_request,
    error_body,
    sign_transmission,
    transmission_message,
    verify_transmission,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["CERT_ID", "TOKEN_TTL_S", "WEBHOOK_RETRY_DELAYS", "PayPalChannel", "PayPalGateway"]

#: Lifetime of an access token (PayPal answers ``expires_in`` 32400 for a fresh one).
TOKEN_TTL_S = 32400.0
#: PayPal retries a webhook "up to 25 times over 3 days"; the spacing is not published: 9 doublings from a minute,
#: then every 4 hours.
WEBHOOK_RETRY_DELAYS: tuple[float, ...] = tuple(60.0 * 2**i for i in range(9)) + (4 * 3600.0,) * 16
WEBHOOK_TIMEOUT_S = 10.0
CERT_ID = "CERT-360caa42-fca2a594-5a0b1f3c"
_SCOPE = ("https://uri.paypal.com/services/invoicing https://uri.paypal.com/services/payments/payment/authcapture "
          "openid https://uri.paypal.com/services/payments/refund https://api.paypal.com/v1/payments/.* "
          "https://uri.paypal.com/services/applications/webhooks")
_UPPER = string.ascii_uppercase + string.digits
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_JSON = "application/json"
_MISSING = "MISSING_REQUIRED_PARAMETER"


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Order:
    """One Orders v2 order plus the simulator's bookkeeping."""

    id: str
    intent: str
    units: list[dict[str, Any]]
    money: Decimal
    out_trade_no: str
    base: str
    return_url: str | None
    payer_action: bool
    created_at: datetime
    status: str = "CREATED"
    approved_at: datetime | None = None
    payer: dict[str, Any] | None = None
    captures: list[dict[str, Any]] = field(default_factory=list)
    updated_at: datetime | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The order as ``GET /v2/checkout/orders/{id}`` shows it."""
        units = [dict(u) for u in self.units]
        if self.captures:
            units[0]["payments"] = {"captures": self.captures}
        body: dict[str, Any] = {"id": self.id, "intent": self.intent, "status": self.status, "purchase_units": units}
        if self.payer is not None:
            body["payment_source"] = {"paypal": {
                "email_address": self.payer["email_address"], "account_id": self.payer["payer_id"],
                "account_status": "VERIFIED", "name": self.payer["name"], "address": self.payer["address"]}}
            body["payer"] = self.payer
        body["create_time"] = _time(self.created_at)
        if self.updated_at is not None:
            body["update_time"] = _time(self.updated_at)
        body["links"] = self.links()
        return body

    def links(self) -> list[dict[str, str]]:
        href = f"{self.base}/v2/checkout/orders/{self.id}"
        links = [{"href": href, "rel": "self", "method": "GET"}]
        if self.status in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if self.payer_action else "approve"
            links.append({"href": f"{self.base}/checkoutnow?token={self.id}", "rel": rel, "method": "GET"})
        if self.status in ("CREATED", "PAYER_ACTION_REQUIRED", "APPROVED"):
            links.append({"href": href, "rel": "update", "method": "PATCH"})
            links.append({"href": f"{href}/capture", "rel": "capture", "method": "POST"})
        return links


@dataclass(slots=True)
class PayPalChannel:
    """One simulated PayPal REST app: credentials, webhook, buyer return rate, fault knobs, tokens and orders."""

    id: str
    client_id: str
    client_secret: str
    faults: Faults
    webhook_url: str | None
    webhook_id: str
    #: Chance that a buyer who approved comes back to the shop's return URL.
    return_probability: float = 1.0
    app_id: str = "APP-80W284485P519543T"
    tokens: dict[str, datetime] = field(default_factory=dict)
    orders: dict[str, _Order] = field(default_factory=dict)
    replies: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)
    transmissions: dict[str, bytes] = field(default_factory=dict)


_Handler = Callable[[Request, PayPalChannel], Awaitable[Response]]


class PayPalGateway(GatewayBase[PayPalChannel]):
    """The simulated PayPal REST API (kind ``paypal``). Add apps with :meth:`add_channel`, serve :attr:`app`.

    ``token_ttl_s`` is the access-token lifetime; ``notify_retry_delays`` the seconds between webhook retries
    (default :data:`WEBHOOK_RETRY_DELAYS`). The return visit is a browser's single request and is never retried.
    """

    kind = "paypal"

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None, hang_s: float = HANG_SECONDS,
                 token_ttl_s: float = TOKEN_TTL_S,
                 notify_retry_delays: Sequence[float] = WEBHOOK_RETRY_DELAYS) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        self._token_ttl = timedelta(seconds=token_ttl_s)
        self._retry_delays = tuple(notify_retry_delays)
        g = self.guarded
        self.app = Starlette(routes=[
            Route("/{channel}/v1/oauth2/token", g(self._token), methods=["POST"]),
            Route("/{channel}/v2/checkout/orders", g(self._authed(self._create)), methods=["POST"]),
            Route("/{channel}/v2/checkout/orders/{id}", g(self._authed(self._show)), methods=["GET"]),
            Route("/{channel}/v2/checkout/orders/{id}/capture", g(self._authed(self._capture)), methods=["POST"]),
            Route("/{channel}/v1/notifications/verify-webhook-signature", g(self._authed(self._verify)),
                  methods=["POST"]),
            Route("/{channel}/v1/notifications/certs/{cert_id}", g(self._cert), methods=["GET"]),
            Route("/{channel}/checkoutnow", g(self._checkout_page), methods=["GET"]),
        ])

    def add_channel(self, channel_id: str, *, client_id: str, client_secret: str, webhook_url: str | None = None,
                    webhook_id: str | None = None, return_probability: float = 1.0,
                    faults: Faults | None = None) -> PayPalChannel:
        """Add a REST app served under ``/{channel_id}/``. ``webhook_id`` is what PayPal would assign the webhook
        (a fixed one is made up if not given). ``ValueError`` for a bad id, empty credentials or a bad rate."""
        if not _CHANNEL_ID.match(channel_id) or channel_id in self._channels:
            raise ValueError(f"channel id {channel_id!r} is malformed or taken")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        if not 0.0 <= return_probability <= 1.0:
            raise ValueError(f"return_probability is a fraction in [0, 1], got {return_probability!r}")
        channel = PayPalChannel(channel_id, client_id, client_secret, faults if faults is not None else Faults(),
                                webhook_url, webhook_id or f"WH-SIM{channel_id.upper()[:10]}", return_probability)
        self._channels[channel_id] = channel
        return channel

    # ---- buyers and ground truth -----------------------------------------------------------------------------

    def buyer_visits(self, channel_id: str, order_id: str) -> bool:
        """A buyer reaches the approval page; True if they approved (status APPROVED, counted as paid).

        Unless ``callback_drop_rate`` drops them, the buyer's return to the shop (with ``return_probability``, when
        the order has a return URL) and the webhook (when the channel has a ``webhook_url``) follow after the
        callback delay; ``duplicate_callback_rate`` sends each twice. ``KeyError`` for an unknown order.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(order_id)
        if order is None:
            raise KeyError(f"no order {order_id!r} on channel {channel_id!r}")
        faults = channel.faults
        if order.status not in ("CREATED", "PAYER_ACTION_REQUIRED") or not roll(faults.pay_probability, self._rng):
            return False
        order.status = "APPROVED"
        order.approved_at = order.updated_at = self._clock.now()
        payer_id = self._code(13)
        order.payer = {"name": {"given_name": "John", "surname": "Doe"},
                       "email_address": "sb-buyer@personal.example.com", "payer_id": payer_id,
                       "address": {"country_code": "US"}}
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
            return True
        copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
        returns = order.return_url is not None and roll(channel.return_probability, self._rng)
        event = self._event(order) if channel.webhook_url is not None else None
        for _ in range(copies):
            delay = faults.callback_delay(self._rng)
            if returns:
                self.schedule(self._return_visit(order, payer_id, delay))
            if event is not None:
                self.schedule(self._webhook(channel, order, event, delay))
        return True

    def ground_truth(self) -> list[OrderTruth]:
        """Every order, per channel in creation order. ``paid`` means approved by the buyer (captured or not);
        ``out_trade_no`` is the first unit's ``invoice_id``, else its ``custom_id``, else its ``reference_id``."""
        return [
            truth_from_attempts(ch.id, o.id, o.out_trade_no, o.money, o.created_at, o.status in PAID_STATUSES,
                                o.approved_at, o.callback_dropped, o.attempts)
            for ch in self._channels.values() for o in ch.orders.values()
        ]

    def maintenance_reply(self, request: Request, channel: PayPalChannel) -> Response:
        """PayPal's 503 ``SERVICE_UNAVAILABLE`` error."""
        return self._error(503, "SERVICE_UNAVAILABLE")

    # ---- HTTP: auth ------------------------------------------------------------------------------------------

    async def _token(self, request: Request, channel: PayPalChannel) -> Response:
        """Client-credentials grant; a still valid token of the app is handed out again with its remaining life."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        user, password = "", ""
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credential.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user = ""
        if not (hmac.compare_digest(user.encode(), channel.client_id.encode())
                and hmac.compare_digest(password.encode(), channel.client_secret.encode())):
            return self._json({"error": "invalid_client", "error_description": "Client Authentication failed"}, 401)
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        if grant != "client_credentials":
            description = "Grant Type is NULL" if not grant else "unsupported grant_type"
            return self._json({"error": "unsupported_grant_type", "error_description": description}, 400)
        now = self._clock.now()
        channel.tokens = {t: exp for t, exp in channel.tokens.items() if exp > now}
        token = next(iter(channel.tokens), None)
        if token is None:
            token = "A21AA" + "".join(self._rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(92))
            channel.tokens[token] = now + self._token_ttl
        expires_in = int((channel.tokens[token] - now).total_seconds())
        return self._json({"scope": _SCOPE, "access_token": token, "token_type": "Bearer", "app_id": channel.app_id,
                           "expires_in": expires_in, "nonce": f"{_time(now)}{self._code(43)}"})

    def _authed(self, handler: _Handler) -> _Handler:
        """``handler`` behind the bearer token check: unknown or expired token → 401 AUTHENTICATION_FAILURE."""

        async def checked(request: Request, channel: PayPalChannel) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            expires = channel.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if expires is None or expires <= self._clock.now():
                return self._error(401, "AUTHENTICATION_FAILURE")
            return await handler(request, channel)

        return checked

    # ---- HTTP: orders ----------------------------------------------------------------------------------------

    async def _create(self, request: Request, channel: PayPalChannel) -> Response:
        if (replay := self._replay(request, channel)) is not None:
            return replay
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        checked = check_order_request(body)
        if isinstance(checked, RequestIssue):
            return self._error(checked.status, checked.name, [checked.detail()])
        assert isinstance(body, dict)
        units, money = checked
        for unit in units:
            unit["payee"] = {"email_address": "sb-merchant@business.example.com", "merchant_id": "SIMMERCHANT01"}
        first = units[0]
        context = body.get("application_context")
        experience = (body.get("payment_source") or {}).get("paypal", {}).get("experience_context")
        return_url = (experience or context or {}).get("return_url")
        now = self._clock.now()
        order = _Order(
            id=self._code(17), intent=body["intent"], units=units, money=money,
            out_trade_no=str(first.get("invoice_id") or first.get("custom_id") or
                             (first["reference_id"] if first["reference_id"] != "default" else "")),
            base=f"http://{request.headers.get('host', '127.0.0.1')}/{channel.id}",
            return_url=return_url if isinstance(return_url, str) else None, payer_action=experience is not None,
            created_at=now, status="PAYER_ACTION_REQUIRED" if experience is not None else "CREATED",
        )
        channel.orders[order.id] = order
        full = "return=representation" in request.headers.get("prefer", "")
        reply = order.as_json() if full else {"id": order.id, "status": order.status, "links": order.links()}
        return self._remember(request, channel, self._json(reply, 201))

    async def _show(self, request: Request, channel: PayPalChannel) -> Response:
        order = channel.orders.get(request.path_params["id"])
        if order is None:
            return self._not_found(request.path_params["id"])
        return self._json(order.as_json())

    async def _capture(self, request: Request, channel: PayPalChannel) -> Response:
        if (replay := self._replay(request, channel)) is not None:
            return replay
        order = channel.orders.get(request.path_params["id"])
        if order is None:
            return self._not_found(request.path_params["id"])
        issue = {"CREATED": "ORDER_NOT_APPROVED", "PAYER_ACTION_REQUIRED": "ORDER_NOT_APPROVED",
                 "COMPLETED": "ORDER_ALREADY_CAPTURED"}.get(order.status)
        if order.intent == "AUTHORIZE":
            issue = "ACTION_DOES_NOT_MATCH_INTENT"
        if issue is not None:
            return self._error(422, "UNPROCESSABLE_ENTITY", [{"issue": issue}])
        now = self._clock.now()
        unit = order.units[0]
        capture_id = self._code(17)
        capture: dict[str, Any] = {
            "id": capture_id, "status": "COMPLETED", "amount": unit["amount"], "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE", "dispute_categories": ["ITEM_NOT_RECEIVED",
                                                                              "UNAUTHORIZED_TRANSACTION"]},
            "create_time": _time(now), "update_time": _time(now),
            "links": [{"href": f"{order.base}/v2/payments/captures/{capture_id}", "rel": "self", "method": "GET"}],
        }
        for key in ("invoice_id", "custom_id"):
            if key in unit:
                capture[key] = unit[key]
        order.captures.append(capture)
        order.status, order.updated_at = "COMPLETED", now
        return self._remember(request, channel, self._json(order.as_json(), 201))

    async def _checkout_page(self, request: Request, channel: PayPalChannel) -> Response:
        """The approval page an ``approve`` link points to. Opening it approves nothing: ``buyer_visits`` does."""
        order = channel.orders.get(request.query_params.get("token", ""))
        text = "This order does not exist." if order is None else f"Pay {order.money} with PayPal (order {order.id})"
        return Response(f"<!DOCTYPE html><html><head><title>PayPal Checkout</title></head><body><p>{text}</p>"
                        "</body></html>", status_code=200 if order else 404, media_type="text/html; charset=utf-8")

    # ---- HTTP: webhook verification -------------------------------------------------------------------------

    async def _cert(self, request: Request, channel: PayPalChannel) -> Response:
        if request.path_params["cert_id"] != CERT_ID:
            return self._not_found(request.path_params["cert_id"])
        return Response(self._signer[1], media_type="application/x-pem-file")

    async def _verify(self, request: Request, channel: PayPalChannel) -> Response:
        """``verify-webhook-signature``: SUCCESS when the event is one this channel sent, unchanged, signed as it
        claims."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(400, "INVALID_REQUEST", [{"field": "/", "location": "body",
                                                         "issue": "MALFORMED_REQUEST_JSON"}])
        names = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id",
                 "webhook_event")
        missing = [n for n in names if not body.get(n)]
        if missing:
            return self._error(400, "INVALID_REQUEST", [{"field": f"/{missing[0]}", "location": "body",
                                                         "issue": _MISSING}])
        sent = channel.transmissions.get(str(body["transmission_id"]))
        ok = (sent is not None and json.loads(sent) == body["webhook_event"] and body["webhook_id"] ==
              channel.webhook_id and body["auth_algo"] == "SHA256withRSA" and
              verify_transmission(self._signer[1], str(body["transmission_sig"]), transmission_message(
                  str(body["transmission_id"]), str(body["transmission_time"]), channel.webhook_id, sent)))
        return self._json({"verification_status": "SUCCESS" if ok else "FAILURE"})

    @cached_property
    def _signer(self) -> tuple[rsa.RSAPrivateKey, bytes]:
        """The key signing this gateway's webhooks and its self-signed certificate (PEM), made on first use."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.sim")])
        now = self._clock.now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256()))
        return key, cert.public_bytes(serialization.Encoding.PEM)

    # ---- HTTP: helpers ---------------------------------------------------------------------------------------

    def _replay(self, request: Request, channel: PayPalChannel) -> Response | None:
        """The first answer to this ``PayPal-Request-Id`` on this path, if there was one."""
        rid = request.headers.get("paypal-request-id")
        saved = channel.replies.get(rid) if rid else None
        if saved is None or saved[0] != request.url.path:
            return None
        return Response(saved[2], status_code=saved[1], media_type=_JSON)

    def _remember(self, request: Request, channel: PayPalChannel, reply: Response) -> Response:
        rid = request.headers.get("paypal-request-id")
        if rid:
            channel.replies[rid] = (request.url.path, reply.status_code, bytes(reply.body))
        return reply

    def _not_found(self, resource_id: str) -> Response:
        return self._error(404, "RESOURCE_NOT_FOUND", [{"field": "order_id", "value": resource_id,
                                                        "location": "path", "issue": "INVALID_RESOURCE_ID"}])

    def _error(self, status: int, name: str, details: list[dict[str, Any]] | None = None) -> Response:
        debug_id = "".join(self._rng.choice("0123456789abcdef") for _ in range(13))
        reply = self._json(error_body(name, debug_id, details), status)
        reply.headers["Paypal-Debug-Id"] = debug_id
        return reply

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body).encode("utf-8"), status_code=status, media_type=_JSON)

    def _code(self, n: int) -> str:
        return "".join(self._rng.choice(_UPPER) for _ in range(n))

    # ---- deliveries -------------------------------------------------------------------------------------------

    def _event(self, order: _Order) -> dict[str, Any]:
        event_id = f"WH-{self._code(17)}-{self._code(17)}"
        href = f"{order.base}/v1/notifications/webhooks-events/{event_id}"
        return {
            "id": event_id, "event_version": "1.0",
            "create_time": self._clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "resource_type": "checkout-order", "resource_version": "2.0", "event_type": "CHECKOUT.ORDER.APPROVED",
            "summary": "An order has been approved by buyer", "resource": order.as_json(),
            "links": [{"href": href, "rel": "self", "method": "GET"},
                      {"href": f"{href}/resend", "rel": "resend", "method": "POST"}],
        }

    async def _return_visit(self, order: _Order, payer_id: str, delay_s: float) -> None:
        """The buyer's browser lands on the return URL once. Acknowledged: a 2xx, or a 3xx (the shop handled it and
        sent the browser on; redirects are not followed so nothing leaves loopback)."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        assert order.return_url is not None
        client = self.notify_client(timeout=WEBHOOK_TIMEOUT_S)

        async def send_once() -> NotifyAttempt:
            at = self._clock.now()
            try:
                reply = await client.get(order.return_url or "", params={"token": order.id, "PayerID": payer_id})
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            return NotifyAttempt(at, reply.status_code, 200 <= reply.status_code < 400)

        await self.deliver(send_once, order.attempts, ())

    async def _webhook(self, channel: PayPalChannel, order: _Order, event: dict[str, Any], delay_s: float) -> None:
        """POST the event, signed, retrying on the schedule until a 2xx; each try is a new transmission."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        assert channel.webhook_url is not None
        url = channel.webhook_url
        payload = json.dumps(event).encode("utf-8")
        client = self.notify_client(timeout=WEBHOOK_TIMEOUT_S)

        async def send_once() -> NotifyAttempt:
            at = self._clock.now()
            tid, when = str(uuid.UUID(int=self._rng.getrandbits(128), version=1)), _time(at)
            signature = sign_transmission(self._signer[0], transmission_message(tid, when, channel.webhook_id, payload))
            if channel.faults.bad_signature(self._rng):
                raw = bytearray(base64.b64decode(signature))
                raw[0] ^= 0xFF
                signature = base64.b64encode(bytes(raw)).decode("ascii")
            channel.transmissions[tid] = payload
            headers = {"Content-Type": _JSON, "User-Agent": "PayPal/AUHD-214.0-58220380", "PAYPAL-TRANSMISSION-ID": tid,
                       "PAYPAL-TRANSMISSION-TIME": when, "PAYPAL-TRANSMISSION-SIG": signature,
                       "PAYPAL-CERT-URL": f"{order.base}/v1/notifications/certs/{CERT_ID}",
                       "PAYPAL-AUTH-ALGO": "SHA256withRSA", "PAYPAL-AUTH-VERSION": "v2"}
            try:
                reply = await client.post(url, content=payload, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            return NotifyAttempt(at, reply.status_code, 200 <= reply.status_code < 300)

        await self.deliver(send_once, order.attempts, self._retry_delays)

