"""Alipay RSA2 rules, checked against python-alipay-sdk where it implements them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization

from monitor.protocols.alipay import (
    check_public_params,
    format_alipay_time,
    format_amount,
    generate_private_key_pem,
    is_notify_ack,
    load_private_key,
    load_public_key,
    notify_sign_content,
    parse_alipay_time,
    parse_amount,
    public_key_pem,
    response_json,
    response_sign_source,
    sign_content,
    sign_response_node,
    sign_rsa2,
    strip_pem,
    verify_response,
    verify_rsa2,
)

KEY = generate_private_key_pem()
PUB = public_key_pem(KEY)
OTHER = generate_private_key_pem()

REQUEST = {
    "app_id": "2021000000000001",
    "method": "alipay.trade.precreate",
    "format": "JSON",
    "charset": "utf-8",
    "sign_type": "RSA2",
    "version": "1.0",
    "timestamp": "2026-11-26 11:12:00",
    "notify_url": "https://shop.example/pay/alipay/notify_url?a=1&b=2",
    "return_url": "",
    "app_auth_token": None,
    "biz_content": '{"out_trade_no":"A1","total_amount":10.5,"subject":"测试 A&B"}',
}


def sdk(app_key: str = KEY, alipay_pub: str = PUB) -> AliPay:
    return AliPay(appid="2021000000000001", app_private_key_string=app_key, alipay_public_key_string=alipay_pub)


def test_request_sign_content_keeps_sign_type_drops_empties_and_sorts_raw() -> None:
    params = {**REQUEST, "sign": "zzz", "file": "@/etc/passwd"}
    assert sign_content(params) == (
        'app_id=2021000000000001&biz_content={"out_trade_no":"A1","total_amount":10.5,"subject":"测试 A&B"}'
        "&charset=utf-8&format=JSON&method=alipay.trade.precreate"
        "&notify_url=https://shop.example/pay/alipay/notify_url?a=1&b=2"
        "&sign_type=RSA2&timestamp=2026-11-26 11:12:00&version=1.0"
    )


def test_notify_sign_content_drops_sign_and_sign_type_keeps_empty() -> None:
    params = {"trade_no": "1", "sign": "s", "sign_type": "RSA2", "buyer_logon_id": "", "app_id": "9"}
    assert notify_sign_content(params) == "app_id=9&buyer_logon_id=&trade_no=1"


def test_request_signature_matches_the_sdk_byte_for_byte() -> None:
    data = {k: v for k, v in REQUEST.items() if v}
    signed = dict(parse_qsl(sdk().sign_data(dict(data))))
    assert signed["sign"] == sign_rsa2(data, KEY)  # PKCS#1 v1.5 is deterministic
    assert verify_rsa2(signed, signed["sign"], PUB)
    assert not verify_rsa2({**signed, "version": "2.0"}, signed["sign"], PUB)
    assert not verify_rsa2(signed, signed["sign"], public_key_pem(OTHER))
    assert not verify_rsa2(signed, "", PUB)
    assert not verify_rsa2(signed, "not base64!", PUB)


def test_notify_signature_verifies_with_the_sdk_and_not_under_the_request_rule() -> None:
    notify = {
        "notify_type": "trade_status_sync", "trade_no": "2026112622001000000000000001", "out_trade_no": "A1",
        "trade_status": "TRADE_SUCCESS", "total_amount": "10.50", "subject": "测试 A&B", "sign_type": "RSA2",
    }
    sign = sign_rsa2(notify, KEY, notify=True)
    assert verify_rsa2({**notify, "sign": sign}, sign, PUB, notify=True)
    assert not verify_rsa2(notify, sign, PUB)  # the request rule includes sign_type
    assert sdk().verify(dict(notify), sign) is True  # the SDK pops sign_type itself
    assert sdk().verify({**notify, "total_amount": "1.00"}, sign) is False


BODY_NODE = '{"code":"10000","msg":"Success","out_trade_no":"A1","qr_code":"https:\\/\\/qr.alipay.com\\/bax1"}'


@pytest.mark.parametrize(
    ("body", "method", "expected"),
    [
        pytest.param(
            '{"alipay_trade_precreate_response":' + BODY_NODE + ',"sign":"x"}', "alipay.trade.precreate",
            BODY_NODE, id="compact",
        ),
        pytest.param(
            '{ "alipay_trade_precreate_response" : ' + BODY_NODE + ' ,\n "sign" : "x" }', "alipay.trade.precreate",
            BODY_NODE, id="spaced",
        ),
        pytest.param(
            '{"error_response":{"code":"40002","sub_code":"isv.invalid-method"},"sign":"x"}', "alipay.trade.nope",
            '{"code":"40002","sub_code":"isv.invalid-method"}', id="error-response",
        ),
        pytest.param(
            '{"alipay_trade_query_response":{"subject":"\\"sign\\":{}"},"sign":"x"}', "alipay.trade.query",
            '{"subject":"\\"sign\\":{}"}', id="sign-inside-a-value",
        ),
        pytest.param('{"alipay_trade_query_response":{"code":"40002"}}', "alipay.trade.query", None, id="no-sign"),
        pytest.param('{"sign":"x","alipay_trade_query_response":{}}', "alipay.trade.query", None, id="sign-first"),
        pytest.param('{"other_response":{},"sign":"x"}', "alipay.trade.query", None, id="no-node"),
    ],
)
def test_response_sign_source_is_the_raw_node_text(body: str, method: str, expected: str | None) -> None:
    assert response_sign_source(body, method) == expected


def test_verify_response_and_the_sdk_agree_on_raw_text() -> None:
    node = {"code": "10000", "msg": "Success", "out_trade_no": "A1", "qr_code": "https://qr.alipay.com/bax1",
            "subject": "测试"}
    text = response_json(node)
    assert '"qr_code":"https:\\/\\/qr.alipay.com\\/bax1"' in text and "测试" in text
    body = '{"alipay_trade_precreate_response":' + text + ',"sign":"' + sign_response_node(text, KEY) + '"}'
    assert verify_response(body, "alipay.trade.precreate", PUB)
    assert sdk()._verify_and_return_sync_response(body, "alipay_trade_precreate_response") == node
    # A verifier that re-serialises without PHP's escaped slash would not match: the raw text is what counts.
    assert not verify_response(body.replace("\\/", "/"), "alipay.trade.precreate", PUB)
    assert not verify_response(body, "alipay.trade.precreate", public_key_pem(OTHER))
    assert not verify_response("<html>", "alipay.trade.precreate", PUB)
    assert not verify_response('{"alipay_trade_precreate_response":' + text + "}", "alipay.trade.precreate", PUB)


def _der(pem: str) -> str:
    return strip_pem(pem)


def test_keys_load_from_pem_or_bare_base64_in_pkcs1_and_pkcs8() -> None:
    key = load_private_key(KEY)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    spki = public_key_pem(KEY)
    rsa_pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    numbers = key.private_numbers()
    for text in (KEY, pkcs1, _der(KEY), _der(pkcs1), "\n".join(_der(pkcs1)[i : i + 64] for i in range(0, 1600, 64))):
        assert load_private_key(text).private_numbers() == numbers
    for text in (spki, _der(spki), rsa_pub, _der(rsa_pub)):
        assert load_public_key(text).public_numbers() == numbers.public_numbers
    assert public_key_pem(_der(spki)) == spki  # a public key gives back its own PEM
    sign = sign_rsa2({"a": "1"}, _der(pkcs1))  # dujiaoka's stored form signs like the PEM
    assert sign == sign_rsa2({"a": "1"}, KEY) and verify_rsa2({"a": "1"}, sign, _der(spki))
    for bad in ("not a key!", base64.b64encode(b"junk").decode(), spki):
        with pytest.raises(ValueError):
            load_private_key(bad)


def test_formats() -> None:
    assert format_amount(Decimal("10")) == "10.00" and format_amount(Decimal("0.5")) == "0.50"
    moment = datetime(2026, 11, 26, 16, 30, 5, tzinfo=UTC)
    assert format_alipay_time(moment) == "2026-11-27 00:30:05"  # Beijing
    assert parse_alipay_time("2026-11-27 00:30:05") == moment
    with pytest.raises(ValueError):
        parse_alipay_time("2026-11-27T00:30:05")
    assert is_notify_ack("success") and not is_notify_ack("success\n") and not is_notify_ack("SUCCESS")
    assert json.loads(response_json({"a": "b/c"})) == {"a": "b/c"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10.5, Decimal("10.50")), (1, Decimal("1.00")), ("0.01", Decimal("0.01")), (" 100000000 ", Decimal("100000000")),
     ("0", None), (0.001, None), ("1.005", None), ("100000000.01", None), ("-1", None), ("abc", None), ("NaN", None),
     (True, None), (None, None), ([1], None)],
)
def test_parse_amount(value: object, expected: Decimal | None) -> None:
    assert parse_amount(value) == expected


GOOD = {"app_id": "1", "method": "alipay.trade.query", "sign": "s", "sign_type": "RSA2",
        "timestamp": "2026-11-26 11:12:00", "version": "1.0", "format": "JSON", "charset": "utf-8"}


@pytest.mark.parametrize(
    ("changes", "code", "sub_code"),
    [({}, None, None), ({"format": "json", "charset": "UTF-8"}, None, None),
     ({"sign": ""}, "40001", "isv.missing-signature"), ({"timestamp": None}, "40001", "isv.missing-timestamp"),
     ({"method": "alipay.trade.refund"}, "40002", "isv.invalid-method"),
     ({"sign_type": "RSA"}, "40002", "isv.invalid-signature-type"), ({"format": "XML"}, "40002", "isv.invalid-format"),
     ({"charset": "GBK"}, "40002", "isv.invalid-charset"),
     ({"timestamp": "1764130320"}, "40002", "isv.invalid-timestamp")],
)
def test_check_public_params(changes: dict[str, str | None], code: str | None, sub_code: str | None) -> None:
    params = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    problem = check_public_params(params, {"alipay.trade.query"})
    assert (problem and problem["code"], problem and problem["sub_code"]) == (code, sub_code)
