"""epay V2 RSA signing, key handling and the timestamp window, checked
against signatures made and verified here with ``cryptography`` directly."""

from __future__ import annotations

import base64
import functools
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from monitor.protocols.epay_v2 import (
    base64_from_pem,
    load_private_key,
    load_public_key,
    notify_params,
    pem_from_base64,
    private_key_pem,
    public_key_pem,
    sign_content,
    sign_rsa,
    signed_reply,
    timestamp_within,
    verify_rsa,
)


@functools.cache
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def raw_sign(content: str) -> str:
    """SHA256withRSA with cryptography itself, over a string written out by hand."""
    return base64.b64encode(key().sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def raw_verify(content: str, sign: str) -> bool:
    try:
        key().public_key().verify(base64.b64decode(sign), content.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_sign_content_keeps_ints_and_drops_empties_arrays_and_sign() -> None:
    params: dict[str, object] = {
        "pid": 1001, "code": 0, "status": 0, "money": "0.01", "name": "VIP会员", "url": "http://a/b?c=1",
        "empty": "", "blank": "  ", "none": None, "data": [{"trade_no": "1"}], "obj": {"a": 1},
        "sign": "x", "sign_type": "RSA", "timestamp": "1764126720",
    }
    assert sign_content(params) == (
        "code=0&money=0.01&name=VIP会员&pid=1001&status=0&timestamp=1764126720&url=http://a/b?c=1"
    )


def test_sign_rsa_is_sha256withrsa_over_the_sign_content() -> None:
    params = {"pid": "1001", "out_trade_no": "T1", "timestamp": "1764126720", "sign_type": "RSA"}
    content = "out_trade_no=T1&pid=1001&timestamp=1764126720"
    sign = sign_rsa(params, key())
    assert sign == raw_sign(content)  # PKCS#1 v1.5 signatures are deterministic
    assert raw_verify(content, sign)
    assert verify_rsa(params, raw_sign(content), key().public_key())
    assert not verify_rsa({**params, "pid": "1002"}, sign, key().public_key())
    assert not verify_rsa(params, "not base64!", key().public_key())
    assert not verify_rsa(params, "", key().public_key())


def test_keys_as_pem_or_bare_base64() -> None:
    private_pem, public_pem = private_key_pem(key()), public_key_pem(key())
    assert public_pem == public_key_pem(key().public_key())
    bare = base64_from_pem(public_pem)
    assert "-----" not in bare and "\n" not in bare
    wrapped = pem_from_base64(bare, "PUBLIC KEY")
    lines = wrapped.splitlines()
    assert lines[0] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    assert pem_from_base64(public_pem, "PUBLIC KEY") == public_pem  # PEM passes through
    params = {"a": "1", "timestamp": "1"}
    for public in (bare, public_pem):
        assert verify_rsa(params, sign_rsa(params, base64_from_pem(private_pem)), public)
    assert load_public_key(bare).public_numbers() == key().public_key().public_numbers()
    assert load_private_key(private_pem).private_numbers() == key().private_numbers()
    with pytest.raises(ValueError):
        load_public_key("bm90IGEga2V5")


@pytest.mark.parametrize(
    ("timestamp", "ok"),
    [("1764126720", True), ("1764127020", True), ("1764126420", True), ("1764127021", False),
     ("1764126419", False), ("abc", False), ("", False), ("nan", False)],
)
def test_timestamp_window_is_300_seconds(timestamp: str, ok: bool) -> None:
    assert timestamp_within(timestamp, 1764126720.0) is ok


def test_signed_reply_signs_code_zero_and_every_scalar() -> None:
    reply = signed_reply({"code": 0, "trade_no": "T", "data": [{"x": 1}], "buyer": None}, key(), 1764126720)
    assert (reply["timestamp"], reply["sign_type"]) == ("1764126720", "RSA")
    assert raw_verify("code=0&timestamp=1764126720&trade_no=T", str(reply["sign"]))


def test_notify_params_are_rsa_signed_in_server_order() -> None:
    params = notify_params(pid=1001, trade_no="2026112611120012345", out_trade_no="ORDER1", type="alipay",
                           name="ORDER1", money=Decimal("10.00"), timestamp=1764126720, private_key=key(),
                           buyer="2088000000000001", param="", api_trade_no=None)
    assert list(params) == ["pid", "trade_no", "out_trade_no", "type", "name", "money", "trade_status", "buyer",
                            "timestamp", "sign_type", "sign"]
    assert (params["money"], params["trade_status"], params["sign_type"]) == ("10", "TRADE_SUCCESS", "RSA")
    content = ("buyer=2088000000000001&money=10&name=ORDER1&out_trade_no=ORDER1&pid=1001&timestamp=1764126720"
               "&trade_no=2026112611120012345&trade_status=TRADE_SUCCESS&type=alipay")
    assert raw_verify(content, params["sign"])
