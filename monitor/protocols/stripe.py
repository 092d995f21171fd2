"""Stripe's REST conventions as the PaymentIntents API uses them: form decoding, money units, key masking, errors,
webhook signatures.

Pure functions only, shared by the simulated Stripe gateway and by paymon's Stripe probes. dujiaoka itself uses
the deprecated Sources + Charges API; paymon and the simulator use the modern
PaymentIntents API (``POST/GET /v1/payment_intents``), whose shapes follow Stripe's public API reference:
amounts are integers in the currency's smallest unit, requests are ``application/x-www-form-urlencoded`` with
bracketed keys (``metadata[order_id]=...``), errors are ``{"error": {"type", "message", "code", "param", ...}}``
and webhooks carry ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.payload" keyed by the endpoint
secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal
from typing import Any

__all__ = [
    "CANCELABLE_STATUSES",
    "DOC_ERRORS",
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "charge_amount",
    "decode_form",
    "error_body",
    "from_minor_units",
    "mask_api_key",
    "minimum_amount",
    "parse_signature_header",
    "sign_webhook",
    "signature_header",
    "to_minor_units",
    "verify_webhook",
]

#: Where Stripe's error objects point ``doc_url`` (followed by the code with ``_`` as ``-``).
DOC_ERRORS = "https://stripe.com/docs/error-codes/"

#: Currencies whose amounts Stripe takes in whole units (no cents).
ZERO_DECIMAL_CURRENCIES = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
})

#: Currencies whose amounts Stripe takes in thousandths, the last digit always 0 (a whole hundredth).
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: Zero-decimal currencies Stripe still takes as two-decimal values whose decimals are always 00.
_WHOLE_IN_CENTS = frozenset({"isk"})

#: PaymentIntent statuses from which ``/cancel`` is allowed.
CANCELABLE_STATUSES = (
    "requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing",
)

#: Minimum charge amounts in the smallest unit (Stripe's "minimum and maximum charge amounts" table).
_MINIMUMS = {
    "usd": 50, "aed": 200, "aud": 50, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250, "eur": 50,
    "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50,
    "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "¥", "aud": "$", "cad": "$", "hkd": "$",
            "sgd": "$", "nzd": "$"}
_KEY_PREFIX = re.compile(r"^(?:sk|rk|pk)_(?:test|live)_")
_FORM_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def _scale(currency: str) -> tuple[int, int]:
    """(minor units per major unit, the step an ``amount`` must be a multiple of) of a currency in Stripe's API."""
    cur = currency.lower()
    if cur in ZERO_DECIMAL_CURRENCIES:
        return 1, 1
    if cur in THREE_DECIMAL_CURRENCIES:
        return 1000, 10
    if cur in _WHOLE_IN_CENTS:
        return 100, 100
    return 100, 1


def to_minor_units(amount: Decimal, currency: str) -> int:
    """A money amount as Stripe's integer ``amount`` (cents; whole units for zero-decimal currencies; thousandths
    for three-decimal ones), rounded to the nearest unit."""
    scale, _ = _scale(currency)
    return int((amount * scale).to_integral_value())


def from_minor_units(amount: int, currency: str) -> Decimal:
    """Stripe's integer ``amount`` as a Decimal in major units (``1050, "usd"`` → ``Decimal("10.50")``)."""
    scale, _ = _scale(currency)
    if scale == 1:
        return Decimal(amount)
    return (Decimal(amount) / scale).quantize(Decimal(1) / scale)


def charge_amount(amount: Decimal, currency: str) -> int:
    """The smallest ``amount`` (minor units) Stripe accepts in ``currency`` that is not below ``amount``: rounded
    *up* to what the currency can express (``0.01`` JPY is 1 yen, never 0), to the currency's step (three-decimal
    amounts end in 0, ISK in 00), and to Stripe's minimum charge."""
    scale, step = _scale(currency)
    minor = int((amount * scale).to_integral_value(rounding=ROUND_CEILING))
    minor = max(minor, minimum_amount(currency)[0])
    return -(-minor // step) * step


def minimum_amount(currency: str) -> tuple[int, str]:
    """The smallest ``amount`` Stripe accepts in ``currency`` and the text of its ``amount_too_small`` error.

    Currencies missing from the table get 50 minor units (Stripe's USD-equivalent floor, approximated).
    """
    cur = currency.lower()
    minimum = _MINIMUMS.get(cur, 50)
    if cur in ZERO_DECIMAL_CURRENCIES:
        shown = f"{minimum}"
    else:
        shown = f"{from_minor_units(minimum, cur)}"
    return minimum, f"Amount must be at least {_SYMBOLS.get(cur, '')}{shown} {cur}"


def mask_api_key(key: str) -> str:
    """The key as Stripe's "Invalid API Key provided" message shows it: the ``sk_test_``-style prefix and the last
    four characters, every other character an ``*``. Keys too short to keep four characters private are fully
    masked, so the key is never echoed whole."""
    match = _KEY_PREFIX.match(key)
    prefix = match.group() if match else ""
    rest = key[len(prefix):]
    if len(rest) <= 8:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


def error_body(type_: str, message: str, *, code: str | None = None, param: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """Stripe's error JSON: ``{"error": {...}}`` with ``doc_url`` when there is a ``code``."""
    err: dict[str, Any] = {}
    if code is not None:
        err["code"] = code
        err["doc_url"] = DOC_ERRORS + code.replace("_", "-")
    err["message"] = message
    if param is not None:
        err["param"] = param
    err.update(extra)
    err["type"] = type_
    return {"error": err}


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracketed form keys as nested values.

    ``metadata[order_id]=A`` → ``{"metadata": {"order_id": "A"}}``; both ``payment_method_types[]=card`` and
    ``payment_method_types[0]=card`` (how stripe-python encodes lists) → ``{"payment_method_types": ["card"]}``.
    A key that is not well formed is kept verbatim (and then reported as an unknown parameter).
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _FORM_KEY.match(key)
        if match is None:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "" and isinstance(node, dict):
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _lists(root)


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            if value and all(k.isdigit() for k in value):
                value = [value[k] for k in sorted(value, key=int)]
        out[key] = value
    return out


def sign_webhook(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature: hex HMAC-SHA256 of ``"{timestamp}.{payload}"`` keyed by the whole ``whsec_`` secret."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},v1={sign_webhook(payload, secret, timestamp)}"


def parse_signature_header(header: str) -> tuple[int | None, list[str]]:
    """``(timestamp, v1 signatures)`` of a ``Stripe-Signature`` header; other schemes (``v0``) are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    return timestamp, signatures


def verify_webhook(payload: bytes, header: str, secret: str, *, now: int, tolerance_s: int = 300) -> bool:
    """Whether a webhook is genuine: some ``v1`` matches and the timestamp is within ``tolerance_s`` of ``now``
    (Stripe's libraries default to 300 s, against replays)."""
    timestamp, signatures = parse_signature_header(header)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign_webhook(payload, secret, timestamp)
    return any(hmac.compare_digest(expected, s) for s in signatures)
