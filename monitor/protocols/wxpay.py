"""WeChat Pay API v2 (XML + MD5), as dujiaoka uses it: signature, XML codec, times, amounts, notify ack.

Pure functions and constants, shared by the gateway simulator (``monitor.sim.wxpay``) and, later, paymon's probes
and reconciler. The rules are those of WeChat Pay API v2 (read from yansongda/pay v2 ``Wechat\\Support``):

- the signature drops ``sign``, empty values and arrays, sorts the keys, joins ``k=v`` with ``&``, appends
  ``&key=`` + the API v2 key and takes the MD5 in upper case (:func:`sign_md5`);
- bodies are ``<xml><k><![CDATA[v]]></k>...</xml>`` (:func:`to_xml`); :func:`parse_xml` reads them without any
  DTD, so entity tricks (billion laughs, external entities) are refused rather than expanded;
- ``total_fee`` is an integer number of fen, ``time_end`` is ``yyyyMMddHHmmss`` in Beijing time;
- a notify is acknowledged by the XML ``return_code`` SUCCESS; dujiaoka answers a plain ``success`` instead and
  whether WeChat accepts that is UNCONFIRMED, so :func:`is_notify_ack` makes it a choice.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal

__all__ = [
    "ACK_XML",
    "DEFAULT_NOTIFY_RETRY_DELAYS",
    "FAIL",
    "SUCCESS",
    "TRADE_STATES",
    "WXPAY_TZ",
    "WxpayXmlError",
    "format_time_end",
    "from_fen",
    "is_notify_ack",
    "parse_time_end",
    "parse_xml",
    "sign_content",
    "sign_md5",
    "to_fen",
    "to_xml",
    "verify",
]

SUCCESS = "SUCCESS"
FAIL = "FAIL"

#: ``trade_state`` values of ``pay/orderquery``. Only SUCCESS means paid; NOTPAY is not final.
TRADE_STATES: frozenset[str] = frozenset(
    {"SUCCESS", "REFUND", "NOTPAY", "CLOSED", "REVOKED", "USERPAYING", "PAYERROR", "ACCEPT"}
)

#: WeChat's notify retry schedule after the first attempt, in seconds: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m
#: 3h 3h 3h 6h 6h (24h4m in all).
DEFAULT_NOTIFY_RETRY_DELAYS: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)

#: The acknowledgement WeChat documents (yansongda ``Wechat::success()``).
ACK_XML = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"

#: ``time_end`` and the dates inside ids are Beijing wall-clock; China has no DST, so +08:00 is exact.
WXPAY_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_TIME_END_FORMAT = "%Y%m%d%H%M%S"

_UNSIGNED = "sign"
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_FEN = Decimal(100)


class WxpayXmlError(ValueError):
    """A body that is not a flat WeChat ``<xml>`` document (malformed, or carrying a DTD / entities)."""


def _value_text(value: object) -> str | None:
    """How PHP's signer prints a value, or None when it leaves the value out (null, '' and arrays)."""
    if value is None or isinstance(value, list | tuple | dict | set):
        return None
    if isinstance(value, bool):
        return "1" if value else None
    text = str(value)
    return text if text != "" else None


def sign_content(params: Mapping[str, object]) -> str:
    """The signed string before ``&key=``: sorted ``k=v`` pairs joined by ``&``; ``sign``, empty values and
    arrays are left out, every other field counts (including ones the caller does not know about)."""
    items = sorted(
        (k, text) for k, v in params.items() if k != _UNSIGNED and (text := _value_text(v)) is not None
    )
    return "&".join(f"{k}={v}" for k, v in items)


def sign_md5(params: Mapping[str, object], key: str) -> str:
    """The v2 MD5 signature: ``MD5(sign_content + "&key=" + key)`` in upper-case hex."""
    return hashlib.md5(f"{sign_content(params)}&key={key}".encode()).hexdigest().upper()


def verify(params: Mapping[str, object], key: str) -> bool:
    """True when ``params['sign']`` is the MD5 signature of the other fields (exact, constant-time compare)."""
    sign = params.get(_UNSIGNED)
    if not isinstance(sign, str) or not sign:
        return False
    return hmac.compare_digest(sign_md5(params, key).encode("ascii"), sign.encode("utf-8"))


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside one CDATA section: split it across two.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(fields: Mapping[str, object]) -> str:
    """``<xml>`` with one child per field, in the given order: integers bare, everything else in CDATA.

    None values are left out. Raises ``ValueError`` for a key that is not a plain XML tag name.
    """
    parts = ["<xml>"]
    for key, value in fields.items():
        if not _TAG.match(key) or key.lower().startswith("xml"):
            raise ValueError(f"not a WeChat field name: {key!r}")
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"<{key}>{value}</{key}>")
        else:
            parts.append(f"<{key}>{_cdata(str(value))}</{key}>")
    parts.append("</xml>")
    return "".join(parts)


def parse_xml(text: str | bytes) -> dict[str, str]:
    """The fields of a flat WeChat XML body (child tag → text; CDATA read as text, whitespace kept).

    Refuses any ``<!DOCTYPE``/``<!ENTITY`` before parsing, so no entity is ever defined, let alone expanded.
    Raises :class:`WxpayXmlError` for that, for malformed XML and for nested elements.
    """
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    if _FORBIDDEN.search(raw):
        raise WxpayXmlError("DTDs and entity declarations are not accepted")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise WxpayXmlError(f"malformed XML: {exc}") from None
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            raise WxpayXmlError(f"nested element inside <{child.tag}>")
        fields[child.tag] = child.text or ""
    return fields


def to_fen(amount: Decimal | str) -> int:
    """CNY → fen as dujiaoka computes ``total_fee`` (``bcmul(actual_price, 100, 0)``: truncates)."""
    return int((Decimal(amount) * _FEN).to_integral_value(rounding=ROUND_DOWN))


def from_fen(fen: int | str) -> Decimal:
    """fen → CNY with two decimals (``total_fee/100``)."""
    return (Decimal(int(fen)) / _FEN).quantize(Decimal("0.01"))


def format_time_end(moment: datetime) -> str:
    """An aware time as WeChat's ``time_end``: ``yyyyMMddHHmmss`` in Beijing time."""
    if moment.tzinfo is None:
        raise ValueError("format_time_end needs an aware datetime")
    return moment.astimezone(WXPAY_TZ).strftime(_TIME_END_FORMAT)


def parse_time_end(text: str) -> datetime:
    """WeChat's ``time_end`` (Beijing ``yyyyMMddHHmmss``) as an aware UTC datetime; ``ValueError`` if malformed."""
    if not re.fullmatch(r"\d{14}", text):
        raise ValueError(f"not a yyyyMMddHHmmss time: {text!r}")
    return datetime.strptime(text, _TIME_END_FORMAT).replace(tzinfo=WXPAY_TZ).astimezone(UTC)


def is_notify_ack(status_code: int, body: str, *, accept_plain_success: bool = True) -> bool:
    """Whether a merchant's reply acknowledges a notify: HTTP 200 and the XML ``return_code`` SUCCESS, or, when
    ``accept_plain_success``, a body that is exactly ``success`` (what dujiaoka answers; UNCONFIRMED)."""
    if status_code != 200:
        return False
    if accept_plain_success and body == "success":
        return True
    try:
        return parse_xml(body).get("return_code") == SUCCESS
    except WxpayXmlError:
        return False
