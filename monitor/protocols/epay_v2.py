"""epay ("彩虹易支付") protocol V2: RSA signatures (SHA256withRSA), epay's bare base64 keys, the timestamp window.

Pure functions and constants, shared by the V2 gateway simulator (which verifies merchant requests and signs
its replies and notifies with the platform key) and by paymon's probes (which sign requests with the merchant
key and verify replies with the platform public key). The rules are those of the epay V2
protocol, as real servers apply them (observed behaviour):

- the signed string is the V1 one (sorted ``k=v`` joined by ``&``, raw values, ``sign``/``sign_type``, nulls
  and whitespace-only values left out) that also skips arrays and objects; ints count (``code=0`` is signed);
- the signature is RSA PKCS#1 v1.5 over SHA-256 of that string, base64;
- epay stores keys as bare base64 (PKCS#8 ``PRIVATE KEY`` / SubjectPublicKeyInfo ``PUBLIC KEY``) and wraps
  them in PEM at 64 columns before use;
- a request's ``timestamp`` (seconds) is rejected when it is more than 300 s away from the server's clock.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from monitor.protocols import epay

__all__ = [
    "CODE_OK",
    "SIGN_TYPE_RSA",
    "TIMESTAMP_WINDOW_S",
    "base64_from_pem",
    "load_private_key",
    "load_public_key",
    "notify_params",
    "pem_from_base64",
    "private_key_pem",
    "public_key_pem",
    "sign_content",
    "sign_rsa",
    "signed_reply",
    "timestamp_within",
    "verify_rsa",
]

#: V2 success code (V1 uses 1).
CODE_OK = 0
SIGN_TYPE_RSA = "RSA"
#: ``|now - timestamp|`` above this many seconds is rejected (``ApiHelper::api_verify``).
TIMESTAMP_WINDOW_S = 300

PemKind = Literal["PUBLIC KEY", "PRIVATE KEY"]
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z ]+-----")


def pem_from_base64(data: str, kind: PemKind) -> str:
    """epay's ``base64ToPem``: wrap a bare base64 key at 64 columns; PEM input is returned unchanged."""
    if not data or "-----BEGIN" in data:
        return data
    body = "".join(data.split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def base64_from_pem(pem: str) -> str:
    """The bare base64 body of a PEM key, as epay stores it (``pre_user.publickey``, ``$conf['private_key']``)."""
    return "".join(_PEM_ARMOUR.sub("", pem).split())


@functools.lru_cache(maxsize=64)
def load_private_key(key: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or bare base64 PKCS#8; ``ValueError`` if it is not one."""
    loaded = serialization.load_pem_private_key(pem_from_base64(key, "PRIVATE KEY").encode("ascii"), None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return loaded


@functools.lru_cache(maxsize=64)
def load_public_key(key: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or bare base64 SubjectPublicKeyInfo; ``ValueError`` if it is not one."""
    loaded = serialization.load_pem_public_key(pem_from_base64(key, "PUBLIC KEY").encode("ascii"))
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return loaded


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM of a private key (what :func:`load_private_key` reads back)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``) of a key or of a private key's public half."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def sign_content(params: Mapping[str, object]) -> str:
    """``Payment::getSignContent``: the V1 string (:func:`monitor.protocols.epay.sign_content`) without arrays.

    Ints are included as decimal text, so ``code=0`` and ``status=0`` are signed.
    """
    return epay.sign_content({k: v for k, v in params.items() if not isinstance(v, list | tuple | dict)})


def _as_private(key: str | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    return load_private_key(key) if isinstance(key, str) else key


def _as_public(key: str | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    return load_public_key(key) if isinstance(key, str) else key


def sign_rsa(params: Mapping[str, object], private_key: str | rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) of :func:`sign_content`, base64 (``openssl_sign`` + ``base64_encode``)."""
    data = sign_content(params).encode("utf-8")
    signature = _as_private(private_key).sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify_rsa(params: Mapping[str, object], sign: str, public_key: str | rsa.RSAPublicKey) -> bool:
    """Whether ``sign`` is the RSA signature of ``params`` (``sign``/``sign_type`` in them are ignored)."""
    try:
        signature = base64.b64decode(sign, validate=False)
    except (binascii.Error, ValueError):
        return False
    try:
        _as_public(public_key).verify(signature, sign_content(params).encode("utf-8"), padding.PKCS1v15(),
                                      hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def timestamp_within(timestamp: str, now_s: float, window_s: int = TIMESTAMP_WINDOW_S) -> bool:
    """Whether a request ``timestamp`` (decimal seconds) is within ``window_s`` of ``now_s``."""
    try:
        value = float(timestamp.strip())
    except ValueError:
        return False
    return math.isfinite(value) and abs(now_s - value) <= window_s


def signed_reply(body: Mapping[str, object], private_key: str | rsa.RSAPrivateKey,
                 timestamp: int) -> dict[str, object]:
    """A successful V2 reply as ``ApiHelper::load_api`` finishes it: ``timestamp`` (a string), ``sign_type``
    ``RSA`` and ``sign`` over every top-level scalar field."""
    reply: dict[str, object] = {**body, "timestamp": str(timestamp), "sign_type": SIGN_TYPE_RSA}
    reply["sign"] = sign_rsa(reply, private_key)
    return reply


def notify_params(
    *,
    pid: int | str,
    trade_no: str,
    out_trade_no: str,
    type: str,
    name: str,
    money: Decimal | str | float,
    timestamp: int,
    private_key: str | rsa.RSAPrivateKey,
    api_trade_no: str | None = None,
    buyer: str | None = None,
    param: str | None = None,
) -> dict[str, str]:
    """The query of a V2 async notify (``creat_callback`` for ``version=1`` orders), RSA-signed with the
    platform key, in the real server's parameter order. Optional fields are sent only when non-empty."""
    params: dict[str, str] = {
        "pid": str(pid),
        "trade_no": trade_no,
        "out_trade_no": out_trade_no,
        "type": type,
        "name": name,
        "money": epay.format_money(money),
        "trade_status": epay.TRADE_SUCCESS,
    }
    for field, value in (("api_trade_no", api_trade_no), ("buyer", buyer), ("param", param)):
        if value is not None and value.strip() not in ("", "0"):
            params[field] = value
    params["timestamp"] = str(timestamp)
    params["sign_type"] = SIGN_TYPE_RSA
    params["sign"] = sign_rsa(params, private_key)
    return params
