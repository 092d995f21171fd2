"""Alipay OpenAPI (当面付 / face-to-face) as dujiaoka uses it: RSA2 signatures, response extraction, codes.

Pure functions and constants only, shared by the gateway simulator (which verifies requests, signs replies and
notifies) and by paymon's probes and reconciler (which sign requests, verify replies and notifies). The rules
are those of Alipay's OpenAPI:

- **Request** signature: every parameter except ``sign`` (``sign_type`` *is* included), empty values and values
  starting with ``@`` left out, sorted by key, raw ``k=v`` pairs joined by ``&`` (no URL-encoding),
  SHA256withRSA PKCS#1 v1.5 with the app private key, base64.
- **Notify** signature: ``sign`` *and* ``sign_type`` removed, the rest sorted and joined the same way (empty
  values kept, as YSD and current AOP do), signed with the Alipay platform private key.
- **Response** signature: over the *raw text* of the ``<method>_response`` (or ``error_response``) object as it
  appears in the body (AOP ``parserJSONSource``), so a verifier must not re-serialise the parsed JSON.

Keys are accepted the way dujiaoka stores them, bare base64 (PKCS#1 or PKCS#8 private, SubjectPublicKeyInfo or
PKCS#1 public), or as PEM.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "ALIPAY_TIME_FORMAT",
    "ALIPAY_TZ",
    "CODE_BUSINESS_FAILED",
    "CODE_INVALID_ARGUMENTS",
    "CODE_MISSING_ARGUMENTS",
    "CODE_OK",
    "CODE_UNAVAILABLE",
    "MSGS",
    "NOTIFY_ACK",
    "PAID_STATUSES",
    "SIGN_TYPE_RSA2",
    "TRADE_CLOSED",
    "TRADE_FINISHED",
    "TRADE_SUCCESS",
    "WAIT_BUYER_PAY",
    "check_public_params",
    "error_node",
    "format_alipay_time",
    "format_amount",
    "generate_private_key_pem",
    "is_notify_ack",
    "load_private_key",
    "load_public_key",
    "notify_sign_content",
    "parse_alipay_time",
    "parse_amount",
    "public_key_pem",
    "response_json",
    "response_node_name",
    "response_sign_source",
    "sign_content",
    "sign_response_node",
    "sign_rsa2",
    "strip_pem",
    "verify_response",
    "verify_rsa2",
]

#: Gateway ``code`` values (Alipay's public error-code table) and the ``msg`` each one comes with.
CODE_OK = "10000"
CODE_UNAVAILABLE = "20000"
CODE_MISSING_ARGUMENTS = "40001"
CODE_INVALID_ARGUMENTS = "40002"
CODE_BUSINESS_FAILED = "40004"
MSGS: Mapping[str, str] = {
    CODE_OK: "Success",
    CODE_UNAVAILABLE: "Service Currently Unavailable",
    CODE_MISSING_ARGUMENTS: "Missing Required Arguments",
    CODE_INVALID_ARGUMENTS: "Invalid Arguments",
    CODE_BUSINESS_FAILED: "Business Failed",
}

#: ``trade_status`` values. Paid ⇔ SUCCESS or FINISHED; CLOSED is unpaid-and-expired or fully refunded.
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_CLOSED = "TRADE_CLOSED"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
PAID_STATUSES: frozenset[str] = frozenset({TRADE_SUCCESS, TRADE_FINISHED})

SIGN_TYPE_RSA2 = "RSA2"
#: The merchant's notify reply that stops Alipay's retries: exactly these 7 characters.
NOTIFY_ACK = "success"

#: Alipay's wire times (``timestamp``, ``gmt_payment``, ``send_pay_date``…) are ``'Y-m-d H:i:s'`` Beijing time.
ALIPAY_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
ALIPAY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_CENT = Decimal("0.01")
_MAX_AMOUNT = Decimal("100000000")
#: Public parameters every request must carry: (name, sub_code, sub_msg) of the 40001 answer when missing.
_REQUIRED = (
    ("app_id", "isv.missing-app-id", "缺少appId参数"),
    ("method", "isv.missing-method", "缺少方法名参数"),
    ("sign", "isv.missing-signature", "缺少签名参数"),
    ("sign_type", "isv.missing-signature-type", "缺少签名类型参数"),
    ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
    ("version", "isv.missing-version", "缺少版本参数"),
)


# ---- signing content ------------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """A parameter as signed, or None when the request rule drops it (None, empty, or an ``@file`` value)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if text == "" or text.startswith("@"):
        return None
    return text


def sign_content(params: Mapping[str, object]) -> str:
    """The string a *request* signature covers: all but ``sign``, empties dropped, ksorted raw ``k=v&``."""
    items = [(k, t) for k, v in params.items() if k != "sign" and (t := _text(v)) is not None]
    items.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "&".join(f"{k}={v}" for k, v in items)


def notify_sign_content(params: Mapping[str, object]) -> str:
    """The string a *notify* signature covers: all but ``sign`` and ``sign_type``, ksorted raw ``k=v&``.

    Values are the URL-decoded form values; empty ones are kept (YSD ``getSignContent($data, true)``).
    """
    items = [(k, "" if v is None else str(v)) for k, v in params.items() if k not in ("sign", "sign_type")]
    items.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "&".join(f"{k}={v}" for k, v in items)


# ---- keys -----------------------------------------------------------------------------------------------


def strip_pem(pem: str) -> str:
    """The bare base64 body of a PEM key, on one line: how dujiaoka's admin form stores keys."""
    return "".join(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))


@functools.lru_cache(maxsize=64)
def _private_key(text: str) -> rsa.RSAPrivateKey:
    if "-----BEGIN" in text:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    else:
        # load_der_private_key reads both PKCS#8 and PKCS#1 ("traditional") DER.
        key = serialization.load_der_private_key(_b64(text), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@functools.lru_cache(maxsize=64)
def _public_key(text: str) -> rsa.RSAPublicKey:
    if "-----BEGIN" in text:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    else:
        key = serialization.load_der_public_key(_b64(text))  # SubjectPublicKeyInfo or PKCS#1
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("key is neither PEM nor base64") from exc


def load_private_key(key: str | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or bare base64 (PKCS#1 or PKCS#8). ``ValueError`` if it is not one."""
    return key if isinstance(key, rsa.RSAPrivateKey) else _private_key(key.strip())


def load_public_key(key: str | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or bare base64 (SPKI or PKCS#1). ``ValueError`` if it is not one."""
    return key if isinstance(key, rsa.RSAPublicKey) else _public_key(key.strip())


def public_key_pem(key: str | rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The ``-----BEGIN PUBLIC KEY-----`` PEM of a key pair (given its private or public half)."""
    loaded: rsa.RSAPrivateKey | rsa.RSAPublicKey
    if isinstance(key, str):
        try:
            loaded = _private_key(key.strip())
        except ValueError:
            loaded = _public_key(key.strip())
    else:
        loaded = key
    public = loaded.public_key() if isinstance(loaded, rsa.RSAPrivateKey) else loaded
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def generate_private_key_pem(bits: int = 2048) -> str:
    """A fresh RSA key as PKCS#8 PEM (for the simulator's platform key and for tests)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# ---- signatures -----------------------------------------------------------------------------------------


def _sign(content: str, private_key: str | rsa.RSAPrivateKey) -> str:
    signature = load_private_key(private_key).sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def _verify(content: str, sign: str, public_key: str | rsa.RSAPublicKey) -> bool:
    try:
        signature = base64.b64decode(sign, validate=True)
        load_public_key(public_key).verify(signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sign_rsa2(params: Mapping[str, object], private_key_pem: str | rsa.RSAPrivateKey, *, notify: bool = False) -> str:
    """The base64 RSA2 signature of a request (``notify=False``) or of an async notify (``notify=True``)."""
    return _sign(notify_sign_content(params) if notify else sign_content(params), private_key_pem)


def verify_rsa2(
    params: Mapping[str, object], sign: str, public_key_pem: str | rsa.RSAPublicKey, *, notify: bool = False
) -> bool:
    """True when ``sign`` is the RSA2 signature of ``params`` under the request rule or, with ``notify=True``,
    the notify rule (``sign`` and ``sign_type`` removed, AOP ``rsaCheckV1``). Never raises for bad input."""
    if not sign:
        return False
    return _verify(notify_sign_content(params) if notify else sign_content(params), sign, public_key_pem)


# ---- responses ------------------------------------------------------------------------------------------


def response_node_name(method: str) -> str:
    """``alipay.trade.query`` → ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


def response_json(value: object) -> str:
    """JSON as the Alipay gateway writes it: compact, raw UTF-8, ``/`` escaped as ``\\/``.

    The escaped slash matches a real precreate reply quoted in fzlee/alipay issue #21
    (``"qr_code":"https:\\/\\/qr.alipay.com\\/bax…"``), and makes YSD's ``json_encode`` re-serialisation agree
    with the raw text. Byte-exact escaping of other characters is UNCONFIRMED.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("/", "\\/")  # '/' only ever occurs inside JSON strings


def response_sign_source(body: str, method: str) -> str | None:
    """The raw text a response signature covers (AOP ``parserJSONSource``), or None if the body has none.

    It runs from just after ``"<method>_response":`` (or ``"error_response":`` when the method's node is
    absent) to the comma before the last ``"sign"``. Whitespace around it is skipped, which changes nothing for
    the compact bodies Alipay sends.
    """
    for node in (response_node_name(method), "error_response"):
        at = body.find(f'"{node}"')
        if at >= 0:
            start = at + len(node) + 2
            break
    else:
        return None
    while start < len(body) and body[start] in " \t\r\n":
        start += 1
    if not body.startswith(":", start):
        return None
    sign_at = body.rfind('"sign"')
    if sign_at <= start:
        return None
    source = body[start + 1 : sign_at].strip()
    if not source.endswith(","):
        return None
    source = source[:-1].rstrip()
    return source if source.startswith("{") and source.endswith("}") else None


def sign_response_node(node_text: str, private_key_pem: str | rsa.RSAPrivateKey) -> str:
    """The gateway's signature of a reply: RSA2 over the raw text of its response node, exactly as sent."""
    return _sign(node_text, private_key_pem)


def verify_response(body: str, method: str, public_key_pem: str | rsa.RSAPublicKey) -> bool:
    """True when a gateway reply carries a valid ``sign`` over the raw text of its response node."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    sign = parsed.get("sign") if isinstance(parsed, dict) else None
    source = response_sign_source(body, method)
    if not isinstance(sign, str) or source is None:
        return False
    return _verify(source, sign, public_key_pem)


# ---- gateway-side checks ---------------------------------------------------------------------------------


def error_node(code: str, sub_code: str, sub_msg: str) -> dict[str, str]:
    """A failed reply's response node: ``code``, its ``msg``, ``sub_code``, ``sub_msg``."""
    return {"code": code, "msg": MSGS[code], "sub_code": sub_code, "sub_msg": sub_msg}


def check_public_params(params: Mapping[str, str], methods: Collection[str]) -> dict[str, str] | None:
    """The error node for the first missing (40001) or invalid (40002) public parameter, or None if all are
    fine. Codes and sub_codes are Alipay's public error-code table; the app id and the signature are checked by
    the caller, which knows the app."""
    for name, sub_code, sub_msg in _REQUIRED:
        if not params.get(name):
            return error_node(CODE_MISSING_ARGUMENTS, sub_code, sub_msg)
    problem: tuple[str, str] | None = None
    if params["method"] not in methods:
        problem = ("isv.invalid-method", "不存在的方法名")
    elif params["sign_type"] != SIGN_TYPE_RSA2:
        problem = ("isv.invalid-signature-type", "无效的签名类型")
    elif params.get("format", "JSON").upper() != "JSON":
        problem = ("isv.invalid-format", "无效的数据格式")
    elif params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        problem = ("isv.invalid-charset", "字符集错误")
    else:
        try:
            parse_alipay_time(params["timestamp"])
        except ValueError:
            problem = ("isv.invalid-timestamp", "非法的时间戳参数")
    return None if problem is None else error_node(CODE_INVALID_ARGUMENTS, *problem)


def parse_amount(value: object) -> Decimal | None:
    """A ``total_amount`` from biz_content (a JSON number, as dujiaoka sends it, or a string) if it is in
    [0.01, 100000000] with at most two decimals; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < _CENT or amount > _MAX_AMOUNT or amount != amount.quantize(_CENT):
        return None
    return amount.quantize(_CENT)


# ---- formats --------------------------------------------------------------------------------------------


def is_notify_ack(body: str) -> bool:
    """Whether a merchant's reply body acknowledges a notify: exactly ``success``."""
    return body == NOTIFY_ACK


def format_amount(amount: Decimal) -> str:
    """An amount as Alipay returns it: a string with two decimals (``10`` → ``"10.00"``)."""
    return f"{amount.quantize(_CENT):.2f}"


def format_alipay_time(moment: datetime) -> str:
    """An aware datetime as Alipay writes it: ``'Y-m-d H:i:s'`` Beijing wall-clock time."""
    return moment.astimezone(ALIPAY_TZ).strftime(ALIPAY_TIME_FORMAT)


def parse_alipay_time(text: str) -> datetime:
    """Read an Alipay ``'Y-m-d H:i:s'`` Beijing time as an aware datetime; ``ValueError`` if malformed."""
    return datetime.strptime(text.strip(), ALIPAY_TIME_FORMAT).replace(tzinfo=ALIPAY_TZ)
