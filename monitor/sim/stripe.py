"""A simulated Stripe account per channel, speaking the PaymentIntents API on loopback.

Serves ``/{channel}/v1/payment_intents`` (create, list), ``/{channel}/v1/payment_intents/search`` (a subset of
Stripe's search language: ``AND``-joined clauses ``metadata['k']:'v'``, ``status:'…'``, ``currency:'…'`` and
``created`` compared with ``<``, ``<=``, ``>``, ``>=``), ``/{channel}/v1/payment_intents/{id}`` (retrieve) and
``/{channel}/v1/payment_intents/{id}/cancel`` with Stripe's auth (Bearer secret key, or HTTP Basic with the key as
user), form decoding, error JSON, ``Idempotency-Key`` replays and ``Request-Id`` headers, so the official
``stripe`` library works against it with only its API base changed. dujiaoka uses Sources + Charges without
webhooks; the simulator uses PaymentIntents, as paymon's probes do.

Besides the shared :class:`~monitor.sim.faults.Faults`, a channel has ``create_reply_delay_s``: the answer to a
create that made an intent is held back that long (the intent exists, its creator never hears of it if it gives
up first). Only a create that ran is delayed; the replay of a saved answer (same ``Idempotency-Key``) is not, as
Stripe answers those from its store.

:meth:`StripeGateway.buyer_visits` makes an intent ``succeeded`` with the channel's pay probability. If the
channel has a ``webhook_url``, a signed ``payment_intent.succeeded`` event is POSTed to it and retried until a 2xx;
without one nothing is sent, and every paid intent the shop does not poll is a lost-order (掉单) candidate, as
in dujiaoka.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols.stripe import (
    CANCELABLE_STATUSES,
    decode_form,
    error_body,
    from_minor_units,
    mask_api_key,
    minimum_amount,
    signature_header,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["DEFAULT_API_VERSION", "WEBHOOK_RETRY_DELAYS", "StripeChannel", "StripeGateway"]

#: The API version answered when a request sends no ``Stripe-Version``.
DEFAULT_API_VERSION = "2024-06-20"
#: Test-mode webhooks are retried "three times over a few hours" (Stripe docs; the exact spacing is not published).
WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (3600.0, 2 * 3600.0, 4 * 3600.0)
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_HEADERS = {"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-cache", "Accept": "*/*"}

#: Top-level parameters create accepts (the rest of Stripe's long list is refused as unknown).
_CREATE_PARAMS = frozenset({
    "amount", "currency", "metadata", "payment_method_types", "description", "automatic_payment_methods",
    "capture_method", "customer", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
    "setup_future_usage", "expand", "return_url", "shipping", "confirm", "payment_method",
})
_CURRENCIES = frozenset({
    "usd", "aed", "aud", "brl", "cad", "chf", "cny", "czk", "dkk", "eur", "gbp", "hkd", "huf", "idr", "inr", "jpy",
    "krw", "mxn", "myr", "nok", "nzd", "php", "pln", "ron", "rub", "sek", "sgd", "thb", "try", "twd", "vnd", "zar",
})
_MAX_AMOUNT = 99_999_999
_CANCEL_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_ALNUM = string.ascii_letters + string.digits
_JSON = "application/json"


@dataclass(slots=True)
class _Intent:
    """One PaymentIntent plus the simulator's bookkeeping."""

    id: str
    amount: int
    currency: str
    client_secret: str
    created_at: datetime
    livemode: bool
    metadata: dict[str, str]
    description: str | None
    payment_method_types: list[str]
    automatic: bool
    status: str = "requires_payment_method"
    paid_at: datetime | None = None
    canceled_at: datetime | None = None
    cancellation_reason: str | None = None
    latest_charge: str | None = None
    payment_method: str | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The PaymentIntent object as the API returns it."""
        succeeded = self.status == "succeeded"
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": self.amount if succeeded else 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": {"allow_redirects": "always", "enabled": True} if self.automatic else None,
            "canceled_at": int(self.canceled_at.timestamp()) if self.canceled_at else None,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": int(self.created_at.timestamp()),
            "currency": self.currency,
            "customer": None,
            "description": self.description,
            "last_payment_error": None,
            "latest_charge": self.latest_charge,
            "livemode": self.livemode,
            "metadata": dict(self.metadata),
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": self.payment_method,
            "payment_method_options": {t: {} for t in self.payment_method_types},
            "payment_method_types": list(self.payment_method_types),
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": self.status,
            "transfer_data": None,
            "transfer_group": None,
        }


@dataclass(slots=True)
class _Saved:
    """An idempotent request's first outcome, replayed for the same key."""

    request: tuple[str, str, str]
    status: int
    body: bytes


@dataclass(slots=True)
class StripeChannel:
    """One simulated Stripe account: its secret key, optional webhook endpoint, fault knobs and intents."""

    id: str
    api_key: str
    faults: Faults
    webhook_url: str | None = None
    webhook_secret: str | None = None
    intents: dict[str, _Intent] = field(default_factory=dict)
    idempotent: dict[str, _Saved] = field(default_factory=dict)
    #: Seconds the answer to a create that made an intent is held back (not a replayed one; see the module doc).
    create_reply_delay_s: float = 0.0


_EQUALS = re.compile(r"^(metadata\['([^'\\]+)'\]|status|currency):'([^'\\]*)'$")
_CREATED = re.compile(r"^created(<=|>=|<|>)(\d+)$")


def _clause(text: str) -> Callable[[_Intent], bool]:
    """One clause of a search query as a test of an intent; ValueError for what the simulator does not know."""
    clause = text.strip()
    if match := _EQUALS.match(clause):
        field_name, key, value = match.groups()
        if key is not None:
            return lambda pi: pi.metadata.get(key) == value
        if field_name == "status":
            return lambda pi: pi.status == value
        return lambda pi: pi.currency == value.lower()
    if match := _CREATED.match(clause):
        op, bound = match.group(1), int(match.group(2))
        compare: dict[str, Callable[[int], bool]] = {
            "<": lambda t: t < bound, "<=": lambda t: t <= bound, ">": lambda t: t > bound, ">=": lambda t: t >= bound,
        }
        return lambda pi: compare[op](int(pi.created_at.timestamp()))
    raise ValueError(f"Invalid search query: unsupported clause {clause!r}")


_Handler = Callable[[Request, StripeChannel], Awaitable[Response]]
_Operation = Callable[[Request, StripeChannel, dict[str, Any]], Response]


class StripeGateway(GatewayBase[StripeChannel]):
    """The simulated Stripe API (kind ``stripe``). Add accounts with :meth:`add_channel`, serve :attr:`app`.

    ``notify_retry_delays`` are the seconds between webhook retries (default: :data:`WEBHOOK_RETRY_DELAYS`).
    """

    kind = "stripe"

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None,
                 hang_s: float = HANG_SECONDS, notify_retry_delays: Sequence[float] = WEBHOOK_RETRY_DELAYS) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        self._retry_delays = tuple(notify_retry_delays)
        self.app = Starlette(routes=[
            Route("/{channel}/v1/payment_intents", self._endpoint(self._collection), methods=["GET", "POST"]),
            Route("/{channel}/v1/payment_intents/search", self._endpoint(self._search), methods=["GET"]),
            Route("/{channel}/v1/payment_intents/{id}", self._endpoint(self._retrieve), methods=["GET"]),
            Route("/{channel}/v1/payment_intents/{id}/cancel", self._endpoint(self._cancel), methods=["POST"]),
            Route("/{channel}/{rest:path}", self._endpoint(self._unrecognized),
                  methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ])

    def _endpoint(self, handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
        """``guarded(handler)``, every answer (faults included) stamped with the ``Stripe-Version`` in use."""
        endpoint = self.guarded(handler)

        async def versioned(request: Request) -> Response:
            reply = await endpoint(request)
            reply.headers["Stripe-Version"] = request.headers.get("stripe-version", DEFAULT_API_VERSION)
            return reply

        return versioned

    def add_channel(self, channel_id: str, *, api_key: str, webhook_url: str | None = None,
                    webhook_secret: str | None = None, faults: Faults | None = None) -> StripeChannel:
        """Add an account served under ``/{channel_id}/`` that accepts ``api_key`` (``sk_test_...``).

        With ``webhook_url``, paid intents are announced there, signed with ``webhook_secret`` (``whsec_...``,
        required then). Raises ``ValueError`` for a bad or duplicate id or missing credentials.
        """
        if not _CHANNEL_ID.match(channel_id) or channel_id in self._channels:
            raise ValueError(f"channel id {channel_id!r} is malformed or taken")
        if not api_key:
            raise ValueError("the API key must not be empty")
        if webhook_url is not None and not webhook_secret:
            raise ValueError("a webhook_url needs its webhook_secret")
        channel = StripeChannel(channel_id, api_key, faults if faults is not None else Faults(), webhook_url,
                                webhook_secret)
        self._channels[channel_id] = channel
        return channel

    # ---- buyers and ground truth ---------------------------------------------------------------------

    def buyer_visits(self, channel_id: str, pi_id: str) -> bool:
        """A buyer reaches checkout for an intent; True if they paid (the intent is now ``succeeded``).

        Only an intent still awaiting payment can be paid. With a webhook endpoint, the event is sent after the
        callback delay unless ``callback_drop_rate`` drops it. ``KeyError`` for an unknown intent.
        """
        channel = self.channel(channel_id)
        intent = channel.intents.get(pi_id)
        if intent is None:
            raise KeyError(f"no payment intent {pi_id!r} on channel {channel_id!r}")
        faults = channel.faults
        if intent.status != "requires_payment_method" or not roll(faults.pay_probability, self._rng):
            return False
        intent.status = "succeeded"
        intent.paid_at = self._clock.now()
        intent.latest_charge = "ch_" + self._token(24)
        intent.payment_method = "pm_" + self._token(24)
        if channel.webhook_url is None:
            return True
        if roll(faults.callback_drop_rate, self._rng):
            intent.callback_dropped = True
            return True
        copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
        event = self._event(intent)
        for _ in range(copies):
            self.schedule(self._webhook(channel, intent, event, faults.callback_delay(self._rng)))
        return True

    def ground_truth(self) -> list[OrderTruth]:
        """Every intent, per channel in creation order; ``out_trade_no`` is ``metadata[order_id]`` (or "")."""
        return [
            truth_from_attempts(ch.id, pi.id, pi.metadata.get("order_id", ""),
                                from_minor_units(pi.amount, pi.currency), pi.created_at, pi.status == "succeeded",
                                pi.paid_at, pi.callback_dropped, pi.attempts)
            for ch in self._channels.values() for pi in ch.intents.values()
        ]

    def maintenance_reply(self, request: Request, channel: StripeChannel) -> Response:
        """Stripe's answer while it is degraded: an ``api_error`` with HTTP 503."""
        body = error_body("api_error", "Stripe is temporarily unavailable. Please try again in a few moments.")
        return self._json(body, 503)

    # ---- HTTP ------------------------------------------------------------------------------------------

    async def _collection(self, request: Request, channel: StripeChannel) -> Response:
        if (denied := self._authenticate(request, channel)) is not None:
            return denied
        if request.method == "GET":
            return self._list(request, channel)
        reply = await self._idempotent(request, channel, self._create)
        delay = channel.create_reply_delay_s
        if delay > 0 and reply.status_code == 200 and "Idempotent-Replayed" not in reply.headers:
            await self._pause(delay)
        return reply

    async def _search(self, request: Request, channel: StripeChannel) -> Response:
        if (denied := self._authenticate(request, channel)) is not None:
            return denied
        query = request.query_params.get("query")
        if not query:
            return self._invalid("Missing required param: query.", "parameter_missing", "query")
        raw = request.query_params.get("limit", "10")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            return self._invalid("This value must be between 1 and 100 (it currently is " + raw + ").", None,
                                 "limit")
        try:
            tests = [_clause(part) for part in query.split(" AND ")]
        except ValueError as exc:
            return self._invalid(str(exc), None, "query")
        found = [pi for pi in reversed(channel.intents.values()) if all(test(pi) for test in tests)]
        page = found[: int(raw)]
        return self._json({"object": "search_result", "data": [pi.as_json() for pi in page],
                           "has_more": len(found) > len(page), "next_page": None,
                           "url": "/v1/payment_intents/search"})

    async def _retrieve(self, request: Request, channel: StripeChannel) -> Response:
        if (denied := self._authenticate(request, channel)) is not None:
            return denied
        intent = channel.intents.get(request.path_params["id"])
        if intent is None:
            return self._missing(request.path_params["id"])
        return self._json(intent.as_json())

    async def _cancel(self, request: Request, channel: StripeChannel) -> Response:
        if (denied := self._authenticate(request, channel)) is not None:
            return denied
        return await self._idempotent(request, channel, self._do_cancel)

    async def _unrecognized(self, request: Request, channel: StripeChannel) -> Response:
        if (denied := self._authenticate(request, channel)) is not None:
            return denied
        path = "/" + request.path_params["rest"]
        message = (f"Unrecognized request URL ({request.method}: {path}). Please see https://stripe.com/docs or we "
                   "can help at https://support.stripe.com/.")
        return self._json(error_body("invalid_request_error", message), 404)

    def _create(self, request: Request, channel: StripeChannel, params: dict[str, Any]) -> Response:
        unknown = sorted(set(params) - _CREATE_PARAMS)
        if unknown:
            return self._invalid(f"Received unknown parameter: {unknown[0]}", "parameter_unknown", unknown[0])
        for name in ("amount", "currency"):
            if not params.get(name):
                return self._invalid(f"Missing required param: {name}.", "parameter_missing", name)
        raw_amount, currency = params["amount"], params["currency"]
        if not isinstance(raw_amount, str) or not re.fullmatch(r"-?\d+", raw_amount):
            return self._invalid(f"Invalid integer: {raw_amount}", "parameter_invalid_integer", "amount")
        if not isinstance(currency, str) or currency.lower() not in _CURRENCIES:
            return self._invalid(f"Invalid currency: {str(currency).lower()}. Stripe currently supports these "
                                 f"currencies: {', '.join(sorted(_CURRENCIES))}", None, "currency")
        amount, currency = int(raw_amount), currency.lower()
        minimum, too_small = minimum_amount(currency)
        if amount < minimum:
            return self._invalid(too_small, "amount_too_small", "amount")
        if amount > _MAX_AMOUNT:
            return self._invalid(f"Amount must be no more than {_MAX_AMOUNT} {currency}", "amount_too_large",
                                 "amount")
        metadata = params.get("metadata", {})
        if metadata == "":
            metadata = {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return self._invalid("Invalid object", "parameter_invalid_type", "metadata")
        types = params.get("payment_method_types")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            return self._invalid("Invalid array", None, "payment_method_types")
        description = params.get("description")
        pi_id = "pi_" + self._token(24)
        intent = _Intent(
            id=pi_id, amount=amount, currency=currency, client_secret=f"{pi_id}_secret_{self._token(25)}",
            created_at=self._clock.now(), livemode=channel.api_key.startswith(("sk_live_", "rk_live_")),
            metadata={k: v for k, v in metadata.items() if v != ""},
            description=description if isinstance(description, str) else None,
            payment_method_types=types or ["card"], automatic=types is None,
        )
        channel.intents[pi_id] = intent
        return self._json(intent.as_json())

    def _do_cancel(self, request: Request, channel: StripeChannel, params: dict[str, Any]) -> Response:
        pi_id = request.path_params["id"]
        intent = channel.intents.get(pi_id)
        if intent is None:
            return self._missing(pi_id)
        unknown = sorted(set(params) - {"cancellation_reason", "expand"})
        if unknown:
            return self._invalid(f"Received unknown parameter: {unknown[0]}", "parameter_unknown", unknown[0])
        reason = params.get("cancellation_reason")
        if reason is not None and reason not in _CANCEL_REASONS:
            return self._invalid(f"Invalid cancellation_reason: must be one of {', '.join(sorted(_CANCEL_REASONS))}",
                                 None, "cancellation_reason")
        if intent.status not in CANCELABLE_STATUSES:
            message = (f"You cannot cancel this PaymentIntent because it has a status of {intent.status}. Only a "
                       "PaymentIntent with one of the following statuses may be canceled: "
                       f"{', '.join(CANCELABLE_STATUSES)}.")
            body = error_body("invalid_request_error", message, code="payment_intent_unexpected_state",
                              payment_intent=intent.as_json())
            return self._json(body, 400)
        intent.status = "canceled"
        intent.canceled_at = self._clock.now()
        intent.cancellation_reason = reason if isinstance(reason, str) else None
        return self._json(intent.as_json())

    def _list(self, request: Request, channel: StripeChannel) -> Response:
        raw = request.query_params.get("limit", "10")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            return self._invalid("This value must be between 1 and 100 (it currently is " + raw + ").", None,
                                 "limit")
        newest = list(reversed(channel.intents.values()))
        page = newest[: int(raw)]
        return self._json({"object": "list", "data": [pi.as_json() for pi in page],
                           "has_more": len(newest) > len(page), "url": "/v1/payment_intents"})

    async def _idempotent(self, request: Request, channel: StripeChannel, run: _Operation) -> Response:
        """Run a POST once per ``Idempotency-Key``: the same key and parameters replay the first 2xx or 5xx
        answer."""
        body = (await request.body()).decode("utf-8", errors="replace")
        pairs = parse_qsl(body, keep_blank_values=True)
        params = decode_form(pairs)
        key = request.headers.get("idempotency-key")
        signature = (request.method, request.url.path, json.dumps(sorted(pairs)))
        if key is not None:
            saved = channel.idempotent.get(key)
            if saved is not None:
                if saved.request != signature:
                    message = (f"Keys for idempotent requests can only be used with the same parameters they were "
                               f"first used with. Try using a key other than '{key}' if you meant to execute a "
                               "different request.")
                    return self._json(error_body("idempotency_error", message), 400)
                reply = Response(saved.body, status_code=saved.status, media_type=_JSON)
                reply.headers["Idempotent-Replayed"] = "true"
                reply.headers["Idempotency-Key"] = key
                return reply
        reply = run(request, channel, params)
        # Stripe keeps the outcome of a request that ran, a 500 included; a refused one (4xx) is not kept.
        if key is not None and (200 <= reply.status_code < 300 or reply.status_code >= 500):
            channel.idempotent[key] = _Saved(signature, reply.status_code, bytes(reply.body))
        if key is not None:
            reply.headers["Idempotency-Key"] = key
        return reply

    def _authenticate(self, request: Request, channel: StripeChannel) -> Response | None:
        """None if the request carries the account's key (Bearer, or Basic with the key as user), else a 401."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        key: str | None = None
        if scheme.lower() == "bearer" and credential.strip():
            key = credential.strip()
        elif scheme.lower() == "basic" and credential.strip():
            try:
                key = base64.b64decode(credential.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
        if not key:
            message = ("You did not provide an API key. You need to provide your API key in the Authorization "
                       "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                       "https://stripe.com/docs/api#authentication for details, or we can help at "
                       "https://support.stripe.com/.")
        elif key != channel.api_key:
            message = f"Invalid API Key provided: {mask_api_key(key)}"
        else:
            return None
        reply = self._json(error_body("invalid_request_error", message), 401)
        reply.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
        return reply

    def _missing(self, pi_id: str) -> Response:
        body = error_body("invalid_request_error", f"No such payment_intent: '{pi_id}'", code="resource_missing",
                          param="intent")
        return self._json(body, 404)

    def _invalid(self, message: str, code: str | None, param: str) -> Response:
        return self._json(error_body("invalid_request_error", message, code=code, param=param), 400)

    def _json(self, body: dict[str, Any], status: int = 200) -> Response:
        reply = Response(json.dumps(body, indent=2).encode("utf-8"), status_code=status, media_type=_JSON)
        reply.headers["Request-Id"] = "req_" + self._token(14)
        return reply

    def _token(self, n: int) -> str:
        return "".join(self._rng.choice(_ALNUM) for _ in range(n))

    # ---- webhooks ----------------------------------------------------------------------------------------

    def _event(self, intent: _Intent) -> dict[str, Any]:
        """The ``payment_intent.succeeded`` event, stamped (as Stripe stamps an event) when the intent changed
        state: its ``created`` is the pay time in whole seconds, not a second clock reading."""
        at = intent.paid_at or self._clock.now()
        return {
            "id": "evt_" + self._token(24),
            "object": "event",
            "api_version": DEFAULT_API_VERSION,
            "created": int(at.timestamp()),
            "data": {"object": intent.as_json()},
            "livemode": intent.livemode,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "payment_intent.succeeded",
        }

    async def _webhook(self, channel: StripeChannel, intent: _Intent, event: dict[str, Any], delay_s: float) -> None:
        """Deliver one event (after ``delay_s``), retrying on the schedule until a 2xx; redirects count as
        failures, as Stripe does not follow them."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        url, secret = channel.webhook_url, channel.webhook_secret
        assert url is not None and secret is not None
        payload = json.dumps(event, indent=2).encode("utf-8")
        client = self.notify_client(timeout=WEBHOOK_TIMEOUT_S)

        async def send_once() -> NotifyAttempt:
            at = self._clock.now()
            header = signature_header(payload, secret, int(at.timestamp()))
            if channel.faults.bad_signature(self._rng):
                header = header[:-8] + ("0" * 8 if not header.endswith("0" * 8) else "f" * 8)
            try:
                reply = await client.post(url, content=payload, headers={**WEBHOOK_HEADERS, "Stripe-Signature": header})
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            return NotifyAttempt(at, reply.status_code, 200 <= reply.status_code < 300)

        await self.deliver(send_once, intent.attempts, self._retry_delays)
