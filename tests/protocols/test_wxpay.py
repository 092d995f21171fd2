"""WeChat Pay v2 helpers: a signature worked example byte for byte, the XML codec's safety, fen and time_end, acks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from monitor.protocols.wxpay import (
    ACK_XML,
    DEFAULT_NOTIFY_RETRY_DELAYS,
    WxpayXmlError,
    format_time_end,
    from_fen,
    is_notify_ack,
    parse_time_end,
    parse_xml,
    sign_content,
    sign_md5,
    to_fen,
    to_xml,
    verify,
)

KEY = "192006250b4c09247ec02edce69f6a2d"
EXAMPLE = {
    "appid": "wx2421b1c4370ec43b",
    "mch_id": "10000100",
    "nonce_str": "ec2316275641faa3aacf3cc599e8730f",
    "out_trade_no": "ABCD1234EFGH5678",
}


def test_worked_example_of_section_5() -> None:
    shuffled = dict(reversed(list(EXAMPLE.items())))
    assert sign_content(shuffled) == (
        "appid=wx2421b1c4370ec43b&mch_id=10000100&nonce_str=ec2316275641faa3aacf3cc599e8730f"
        "&out_trade_no=ABCD1234EFGH5678"
    )
    assert sign_md5(shuffled, KEY) == "C3727BAA232EA13B0A5E5B0A5D613EBB"


def test_sign_skips_sign_empty_and_arrays_but_keeps_unknown_fields() -> None:
    noisy = {**EXAMPLE, "sign": "X", "attach": "", "detail": None, "list": ["a"], "zzz": "1"}
    assert sign_content(noisy) == sign_content(EXAMPLE) + "&zzz=1"
    assert sign_md5({**EXAMPLE, "attach": "", "sign": "whatever"}, KEY) == "C3727BAA232EA13B0A5E5B0A5D613EBB"
    assert sign_content({"total_fee": 1000, "b": "0"}) == "b=0&total_fee=1000"


def test_verify() -> None:
    signed = {**EXAMPLE, "sign": "C3727BAA232EA13B0A5E5B0A5D613EBB"}
    assert verify(signed, KEY)
    assert not verify({**signed, "sign": "c3727baa232ea13b0a5e5b0a5d613ebb"}, KEY)  # case matters
    assert not verify({**signed, "out_trade_no": "ABCD1234EFGH5679"}, KEY)
    assert not verify(signed, KEY + "x")
    assert not verify(EXAMPLE, KEY)
    assert not verify({**EXAMPLE, "sign": ""}, KEY)


def test_xml_round_trip_with_cdata_and_bare_integers() -> None:
    fields = {"return_code": "SUCCESS", "total_fee": 1000, "body": "VIP会员 <x> & ]]> end", "skip": None}
    text = to_xml(fields)
    assert text.startswith("<xml><return_code><![CDATA[SUCCESS]]></return_code><total_fee>1000</total_fee>")
    assert "skip" not in text
    assert parse_xml(text) == {"return_code": "SUCCESS", "total_fee": "1000", "body": "VIP会员 <x> & ]]> end"}
    assert parse_xml(text.encode("utf-8"))["body"] == "VIP会员 <x> & ]]> end"
    assert parse_xml("<xml><a>  spaced  </a><b/></xml>") == {"a": "  spaced  ", "b": ""}
    with pytest.raises(ValueError):
        to_xml({"bad tag": "x"})


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        "<xml><a>&lol2;</a></xml>",
        '<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><a>x</a></xml>',
        '<!doctype xml [<!entity x "y">]><xml><a>&x;</a></xml>',
        "<xml><a><![CDATA[x]]></a>",
        "success",
        "",
        "<xml><a><b>nested</b></a></xml>",
    ],
)
def test_parse_xml_refuses_entities_and_malformed_bodies(body: str) -> None:
    with pytest.raises(WxpayXmlError):
        parse_xml(body)


def test_fen_and_time_end() -> None:
    assert to_fen(Decimal("10.00")) == 1000
    assert to_fen("0.019") == 1  # bcmul(..., 0) truncates
    assert from_fen(1234) == Decimal("12.34")
    assert str(from_fen("100")) == "1.00"
    paid = datetime(2026, 11, 26, 16, 5, 9, tzinfo=UTC)
    assert format_time_end(paid) == "20261127000509"  # Beijing is UTC+8: the next day
    assert parse_time_end("20261127000509") == paid
    with pytest.raises(ValueError):
        parse_time_end("2026-11-27 00:05")
    with pytest.raises(ValueError):
        format_time_end(datetime(2026, 1, 1))


def test_notify_ack_rules() -> None:
    assert is_notify_ack(200, ACK_XML)
    assert is_notify_ack(200, "<xml><return_code>SUCCESS</return_code></xml>")
    assert is_notify_ack(200, "success")
    assert not is_notify_ack(200, "success", accept_plain_success=False)
    assert not is_notify_ack(200, "success\n")
    assert not is_notify_ack(200, "SUCCESS")
    assert not is_notify_ack(500, ACK_XML)
    assert not is_notify_ack(200, "<xml><return_code><![CDATA[FAIL]]></return_code></xml>")
    assert not is_notify_ack(200, "<html>success</html>")


def test_default_retry_schedule_is_wechats_24h4m() -> None:
    assert len(DEFAULT_NOTIFY_RETRY_DELAYS) == 15
    assert sum(DEFAULT_NOTIFY_RETRY_DELAYS) == 24 * 3600 + 4 * 60
