"""epusdt (USDT-TRC20, ``assimon/epusdt``): the MD5 signature, Go's number formatting, codes and amounts.

Pure functions and constants, shared by the gateway simulator (``monitor.sim.epusdt``) and, later, paymon's probes
and reconciler. The rules are those of the epusdt protocol, read from epusdt's ``util/sign/sign.go``:
the JSON object is decoded into a Go map (so every number becomes a float64), ``signature`` and null or empty
values are skipped, numbers are printed with ``strconv.FormatFloat(v, 'f', -1, 64)`` (shortest round-trip digits,
never an exponent: ``42``, ``7.9104``), the ``k=v`` strings are sorted and joined with ``&``, the API token is
appended bare, and the MD5 is lower-case hex. A value of another JSON type (bool, array, object) makes Go's signer
fail, which the server answers as a signature error: :func:`sign` raises ``ValueError`` and :func:`verify` says
False.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from decimal import Decimal

__all__ = [
    "ACK_BODY",
    "CODE_AMOUNT_ERROR",
    "CODE_BLOCK_PROCESSED",
    "CODE_DUPLICATE_ORDER",
    "CODE_NO_AMOUNT_CHANNEL",
    "CODE_NO_WALLET",
    "CODE_OK",
    "CODE_ORDER_NOT_FOUND",
    "CODE_PARAMS_ERROR",
    "CODE_RATE_ERROR",
    "CODE_SIGNATURE_ERROR",
    "CODE_SYSTEM_ERROR",
    "DEFAULT_RATE",
    "ERRNO",
    "POWERED_BY",
    "STATUS_EXPIRED",
    "STATUS_PAID",
    "STATUS_WAIT_PAY",
    "asynq_retry_delay",
    "format_number",
    "go_json",
    "sign",
    "sign_content",
    "usdt_amount",
    "verify",
]

#: ``status_code`` of every reply (``util/constant/errno.go``); the HTTP status is 200 throughout.
CODE_OK = 200
CODE_SYSTEM_ERROR = 400
CODE_SIGNATURE_ERROR = 401
CODE_DUPLICATE_ORDER = 10002
CODE_NO_WALLET = 10003
CODE_AMOUNT_ERROR = 10004
CODE_NO_AMOUNT_CHANNEL = 10005
CODE_RATE_ERROR = 10006
CODE_BLOCK_PROCESSED = 10007
CODE_ORDER_NOT_FOUND = 10008
CODE_PARAMS_ERROR = 10009
ERRNO: Mapping[int, str] = {
    CODE_SYSTEM_ERROR: "系统错误",
    CODE_SIGNATURE_ERROR: "签名认证错误",
    10001: "钱包地址已存在，请勿重复添加",
    CODE_DUPLICATE_ORDER: "支付交易已存在，请勿重复创建",
    CODE_NO_WALLET: "无可用钱包地址，无法发起支付",
    CODE_AMOUNT_ERROR: "支付金额有误, 无法满足最小支付单位",
    CODE_NO_AMOUNT_CHANNEL: "无可用金额通道",
    CODE_RATE_ERROR: "汇率计算错误",
    CODE_BLOCK_PROCESSED: "订单区块已处理",
    CODE_ORDER_NOT_FOUND: "订单不存在",
    CODE_PARAMS_ERROR: "无法解析请求参数",
}

#: Order ``status`` (``orders_mdb.go``): 1 等待支付, 2 支付成功, 3 已过期.
STATUS_WAIT_PAY = 1
STATUS_PAID = 2
STATUS_EXPIRED = 3

#: The header every callback carries.
POWERED_BY = "Epusdt(https://github.com/assimon/epusdt)"
#: A callback counts as acknowledged only when the reply body is exactly this (any HTTP status).
ACK_BODY = "ok"
#: CNY per USDT when no rate is known (``forced_usdt_rate`` overrides it).
DEFAULT_RATE = Decimal("6.4")

_UNSIGNED = "signature"


def format_number(value: float | int | Decimal) -> str:
    """A JSON number as Go's signer prints it: float64, ``FormatFloat(v, 'f', -1, 64)``.

    ``10`` and ``10.0`` → ``10``; ``1.5625`` → ``1.5625``; ``1e21`` → ``1000000000000000000000``. Integers go
    through float64 too (Go decodes every JSON number that way), so very large ones lose digits as in Go.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    # repr() is the shortest round-trip form, like Go's precision -1; Decimal prints it without an exponent.
    return format(Decimal(repr(number)).normalize(), "f")


def _value_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"epusdt cannot sign a {type(value).__name__} value")
    text = value if isinstance(value, str) else format_number(value)
    return text or None


def sign_content(params: Mapping[str, object]) -> str:
    """The signed string without the token: sorted ``k=v`` strings joined by ``&`` (``signature``, null and empty
    values skipped). Raises ``ValueError`` for a bool, array or object value."""
    pairs = sorted(
        f"{k}={text}" for k, v in params.items() if k != _UNSIGNED and (text := _value_text(v)) is not None
    )
    return "&".join(pairs)


def sign(params: Mapping[str, object], token: str) -> str:
    """``md5(sign_content(params) + token)`` in lower-case hex."""
    return hashlib.md5((sign_content(params) + token).encode("utf-8")).hexdigest()


def verify(params: Mapping[str, object], token: str) -> bool:
    """True when ``params['signature']`` is a string equal to the signature of the other fields."""
    signature = params.get(_UNSIGNED)
    if not isinstance(signature, str):
        return False
    try:
        expected = sign(params, token)
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))


def usdt_amount(cny: float | Decimal, rate: Decimal = DEFAULT_RATE) -> Decimal:
    """The USDT ``actual_amount`` of a CNY amount: ``fmt.Sprintf("%.4f", rmb.Div(rate).InexactFloat64())``.

    Raises ``ValueError`` for a rate that is not positive.
    """
    if rate <= 0:
        raise ValueError(f"the USDT rate must be positive, got {rate}")
    quotient = Decimal(repr(float(cny))) / rate
    return Decimal(f"{float(quotient):.4f}")


def asynq_retry_delay(retried: int) -> float:
    """asynq's default wait before retry number ``retried + 1`` without its random part: ``n**4 + 15`` seconds
    (the real one adds ``rand(30) * (n + 1)``)."""
    return float(retried**4 + 15)


def _go_float(value: float | Decimal) -> str:
    """encoding/json's float64: the 'f' form, or 'e' below 1e-6 and from 1e21 on (exponent without zero pad)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"JSON has no {number}")
    magnitude = abs(number)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, _, exponent = repr(number).partition("e")
        sign_char = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign_char}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return format_number(number)


def go_json(value: object) -> str:
    """Serialise like Go's ``encoding/json`` (echo's ``c.JSON``): object keys in the given order, no spaces,
    numbers as float64 prints them, non-ASCII raw, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return _go_float(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(char, escaped)
        return text
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"cannot serialise a {type(value).__name__}")
