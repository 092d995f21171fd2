"""PayPal REST conventions for OAuth + Orders v2: money strings, error bodies, webhook transmission signatures.

Pure functions only, shared by the simulated PayPal gateway and by paymon's PayPal probes. dujiaoka uses the
v1 Payments API; paymon and the simulator use Orders v2 (``POST/GET
/v2/checkout/orders``, ``.../capture``) with a client-credentials bearer token, as PayPal's public API reference
describes: amounts are decimal strings with the currency's precision, errors are ``{"name", "message",
"debug_id", "details": [{"issue", "field", ...}], "links"}`` and webhooks are signed with SHA256withRSA over
``transmission_id|transmission_time|webhook_id|crc32(body)`` by the certificate at ``PAYPAL-CERT-URL``.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "CURRENCIES",
    "ERROR_MESSAGES",
    "ISSUE_DESCRIPTIONS",
    "PAID_STATUSES",
    "ZERO_DECIMAL_CURRENCIES",
    "RequestIssue",
    "charge_value",
    "check_order_request",
    "error_body",
    "format_amount",
    "parse_amount",
    "sign_transmission",
    "transmission_message",
    "verify_transmission",
]

#: Currencies the REST APIs accept (PayPal's "currency codes" table).
CURRENCIES = frozenset({
    "AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "JPY", "MYR", "MXN", "TWD", "NZD", "NOK",
    "PHP", "PLN", "GBP", "SGD", "SEK", "CHF", "THB", "USD",
})
#: Currencies without decimals in the REST APIs.
ZERO_DECIMAL_CURRENCIES = frozenset({"HUF", "JPY", "TWD"})
#: Order statuses meaning the buyer has authorized the money (``APPROVED``) or it was captured.
PAID_STATUSES = frozenset({"APPROVED", "COMPLETED"})

#: ``message`` of each error ``name``.
ERROR_MESSAGES = {
    "INVALID_REQUEST": "Request is not well-formed, syntactically incorrect, or violates schema.",
    "AUTHENTICATION_FAILURE": ("Authentication failed due to invalid authentication credentials or a missing "
                               "Authorization header."),
    "RESOURCE_NOT_FOUND": "The specified resource does not exist.",
    "UNPROCESSABLE_ENTITY": ("The requested action could not be performed, semantically incorrect, or failed "
                             "business validation."),
    "SERVICE_UNAVAILABLE": "Service Unavailable.",
}
#: ``description`` of each ``details[].issue`` used here.
ISSUE_DESCRIPTIONS = {
    "MALFORMED_REQUEST_JSON": "The request JSON is not well formed.",
    "MISSING_REQUIRED_PARAMETER": "A required field / parameter is missing.",
    "INVALID_PARAMETER_VALUE": "The value of a field is invalid.",
    "INVALID_PARAMETER_SYNTAX": "The value of a field does not conform to the expected format.",
    "CURRENCY_NOT_SUPPORTED": "Currency code is not currently supported.",
    "DECIMAL_PRECISION": "If the currency supports decimals, only two decimal place precision is supported.",
    "CANNOT_BE_ZERO_OR_NEGATIVE": "Must be greater than zero. If the currency supports decimals, only two decimal "
                                  "place precision is supported.",
    "INVALID_RESOURCE_ID": "Specified resource ID does not exist. Please check the resource ID and try again.",
    "ORDER_NOT_APPROVED": ("Payer has not yet approved the Order for payment. Please redirect the payer to the "
                           "'rel':'approve' url returned as part of the HATEOAS links within the Create Order call or "
                           "provide a valid payment_source in the request."),
    "ORDER_ALREADY_CAPTURED": "Order already captured.If 'intent=CAPTURE' only one capture per order is allowed.",
    "ACTION_DOES_NOT_MATCH_INTENT": ("Order was created with an intent to 'AUTHORIZE'. Please use v2/checkout/orders/"
                                     "order_id/authorize to complete the transaction or alternately Create an order "
                                     "with an intent of 'CAPTURE'."),
}
_VALUE = re.compile(r"^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$")


def parse_amount(value: object, currency: str) -> tuple[Decimal | None, str | None]:
    """``(amount, None)`` for a valid ``amount.value``, else ``(None, issue)`` with PayPal's issue code."""
    if not isinstance(value, str) or not _VALUE.match(value):
        return None, "INVALID_PARAMETER_SYNTAX"
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None, "INVALID_PARAMETER_SYNTAX"
    places = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        return None, "DECIMAL_PRECISION"
    if amount <= 0:
        return None, "CANNOT_BE_ZERO_OR_NEGATIVE"
    return amount, None


def format_amount(amount: Decimal, currency: str) -> str:
    """An amount as PayPal writes ``value``: ``"10.00"``, or ``"1000"`` in a zero-decimal currency."""
    places = Decimal(1) if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return str(amount.quantize(places))


def charge_value(amount: Decimal, currency: str) -> str:
    """``amount`` as a ``value`` PayPal accepts in ``currency``, rounded *up* to the currency's precision (``0.01``
    JPY is ``"1"``, never ``"0"``)."""
    places = Decimal(1) if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return str(amount.quantize(places, rounding=ROUND_CEILING))


def error_body(name: str, debug_id: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """PayPal's error JSON for ``name``; each detail gets its ``description`` and a link to the issue's docs."""
    body: dict[str, Any] = {"name": name}
    if details:
        body["details"] = [{**d, "description": ISSUE_DESCRIPTIONS.get(d["issue"], d["issue"])} for d in details]
    body["message"] = ERROR_MESSAGES.get(name, name)
    body["debug_id"] = debug_id
    anchor = details[0]["issue"] if details else name
    body["links"] = [{"href": f"https://developer.paypal.com/docs/api/orders/v2/#error-{anchor}",
                      "rel": "information_link", "method": "GET"}]
    return body


@dataclass(frozen=True, slots=True)
class RequestIssue:
    """Why PayPal refuses a request: HTTP 400 (``INVALID_REQUEST``) or 422 (``UNPROCESSABLE_ENTITY``) and one
    ``details`` entry."""

    status: int
    field: str
    issue: str
    value: str | None = None

    @property
    def name(self) -> str:
        return "INVALID_REQUEST" if self.status == 400 else "UNPROCESSABLE_ENTITY"

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"field": self.field, "location": "body", "issue": self.issue}
        if self.value is not None:
            detail["value"] = self.value
        return detail


def check_order_request(body: object) -> tuple[list[dict[str, Any]], Decimal] | RequestIssue:
    """Validate a create-order body as PayPal does: its purchase units, normalized (``reference_id`` defaulting
    to ``"default"``, amounts re-formatted, only the fields the simulator keeps), and their total; or the first
    problem found. Syntax problems are 400s with index paths, business rules 422s with ``@reference_id`` paths."""
    if not isinstance(body, dict):
        return RequestIssue(400, "/", "MALFORMED_REQUEST_JSON")
    intent = body.get("intent")
    if not intent:
        return RequestIssue(400, "/intent", "MISSING_REQUIRED_PARAMETER")
    if intent not in ("CAPTURE", "AUTHORIZE"):
        return RequestIssue(400, "/intent", "INVALID_PARAMETER_VALUE", str(intent))
    raw_units = body.get("purchase_units")
    if not isinstance(raw_units, list) or not raw_units:
        return RequestIssue(400, "/purchase_units", "MISSING_REQUIRED_PARAMETER")
    units: list[dict[str, Any]] = []
    total = Decimal(0)
    for i, raw in enumerate(raw_units):
        amount = raw.get("amount") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(amount, dict):
            return RequestIssue(400, f"/purchase_units/{i}/amount", "MISSING_REQUIRED_PARAMETER")
        currency, value = amount.get("currency_code"), amount.get("value")
        for name, given in (("currency_code", currency), ("value", value)):
            if not given:
                return RequestIssue(400, f"/purchase_units/{i}/amount/{name}", "MISSING_REQUIRED_PARAMETER")
        ref = str(raw.get("reference_id") or "default")
        where = f"/purchase_units/@reference_id=='{ref}'/amount"
        if currency not in CURRENCIES or (units and currency != units[0]["amount"]["currency_code"]):
            return RequestIssue(422, f"{where}/currency_code", "CURRENCY_NOT_SUPPORTED", str(currency))
        money, issue = parse_amount(value, str(currency))
        if money is None or issue is not None:
            if issue == "INVALID_PARAMETER_SYNTAX":
                return RequestIssue(400, f"/purchase_units/{i}/amount/value", issue, str(value))
            return RequestIssue(422, f"{where}/value", issue or "INVALID_PARAMETER_VALUE", str(value))
        unit: dict[str, Any] = {"reference_id": ref,
                                "amount": {"currency_code": currency, "value": format_amount(money, str(currency))}}
        for key in ("description", "custom_id", "invoice_id", "soft_descriptor"):
            if isinstance(raw.get(key), str):
                unit[key] = raw[key]
        units.append(unit)
        total += money
    return units, total


def transmission_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    """What a webhook's ``PAYPAL-TRANSMISSION-SIG`` signs: ``id|time|webhook_id|crc32`` (CRC32 of the raw body as
    an unsigned decimal)."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


def sign_transmission(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """The base64 SHA256withRSA signature of a :func:`transmission_message`."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify_transmission(cert_pem: bytes, signature_b64: str, message: bytes) -> bool:
    """Whether ``signature_b64`` is the certificate's SHA256withRSA signature of ``message``."""
    public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
