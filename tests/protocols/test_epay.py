"""epay V1 signing and formatting, against worked examples of the epay V1 protocol."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from monitor.protocols.epay import (
    EPAY_TZ,
    NOTIFY_RETRY_DELAYS,
    coerce_int,
    format_epay_time,
    format_money,
    is_notify_ack,
    notify_params,
    parse_epay_time,
    sign_content,
    sign_md5,
    url_with_query,
    verify_md5,
)

KEY = "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"

# (a) dujiaoka -> submit.php
EXAMPLE_A = {
    "pid": 1001,
    "type": "alipay",
    "out_trade_no": "ABCD1234EFGH5678",
    "return_url": "https://shop.example.com/pay/yipay/return_url?order_id=ABCD1234EFGH5678",
    "notify_url": "https://shop.example.com/pay/yipay/notify_url",
    "name": "ABCD1234EFGH5678",
    "money": format_money(Decimal("10.00")),
    "sign_type": "MD5",
}
CONTENT_A = (
    "money=10&name=ABCD1234EFGH5678&notify_url=https://shop.example.com/pay/yipay/notify_url"
    "&out_trade_no=ABCD1234EFGH5678&pid=1001"
    "&return_url=https://shop.example.com/pay/yipay/return_url?order_id=ABCD1234EFGH5678&type=alipay"
)
# (b) epay -> notify
CONTENT_B = (
    "money=10&name=ABCD1234EFGH5678&out_trade_no=ABCD1234EFGH5678&pid=1001"
    "&trade_no=2024010112000012345&trade_status=TRADE_SUCCESS&type=alipay"
)
# (c) non-ASCII value
EXAMPLE_C = {
    "money": "1.00",
    "name": "VIP会员",
    "notify_url": "http://www.pay.com/notify_url.php",
    "out_trade_no": "20160806151343349",
    "pid": "1001",
    "return_url": "http://www.pay.com/return_url.php",
    "type": "wxpay",
}
CONTENT_C = (
    "money=1.00&name=VIP会员&notify_url=http://www.pay.com/notify_url.php&out_trade_no=20160806151343349"
    "&pid=1001&return_url=http://www.pay.com/return_url.php&type=wxpay"
)


def _notify_b() -> dict[str, str]:
    return notify_params(
        pid=1001,
        trade_no="2024010112000012345",
        out_trade_no="ABCD1234EFGH5678",
        type="alipay",
        name="ABCD1234EFGH5678",
        money=Decimal("10.00"),
        key=KEY,
    )


def test_example_a_submit() -> None:
    assert sign_content(EXAMPLE_A) == CONTENT_A
    assert sign_md5(EXAMPLE_A, KEY) == "e0d1dd00a8bdf00cb094949b4b6bacac"


def test_example_b_notify() -> None:
    params = _notify_b()
    assert sign_content(params) == CONTENT_B
    assert params["sign"] == "957c97db0a3a65213c0ed6cbf912bece"
    assert params["sign_type"] == "MD5"
    # The real server's parameter order (irrelevant to the signature, but what goes on the wire).
    assert list(params) == [
        "pid",
        "trade_no",
        "out_trade_no",
        "type",
        "name",
        "money",
        "trade_status",
        "sign",
        "sign_type",
    ]
    assert params["money"] == "10"


def test_example_c_non_ascii() -> None:
    assert sign_content(EXAMPLE_C) == CONTENT_C
    assert sign_md5(EXAMPLE_C, KEY) == "3a832bf6c9adc97d5dc3a5f788d081ce"


def test_sign_drops_sign_fields_and_empty_values_but_keeps_zero() -> None:
    params: dict[str, object] = {
        "b": "2",
        "a": "0",
        "sign": "x",
        "sign_type": "MD5",
        "empty": "",
        "blank": "  \t",
        "none": None,
        "false": False,
        "true": True,
    }
    assert sign_content(params) == "a=0&b=2&true=1"
    assert sign_md5(params, "k") == sign_md5({"a": "0", "b": "2", "true": "1"}, "k")


def test_notify_param_is_sent_only_when_non_empty() -> None:
    common = dict(pid=1, trade_no="1", out_trade_no="o", type="alipay", name="n", money="1.50", key="k")
    assert "param" not in notify_params(**common, param=" ")  # type: ignore[arg-type]
    with_param = notify_params(**common, param="x")  # type: ignore[arg-type]
    assert with_param["param"] == "x"
    assert list(with_param)[-3:] == ["param", "sign", "sign_type"]
    assert with_param["money"] == "1.5"


def test_verify_round_trip() -> None:
    params = _notify_b()
    assert verify_md5(params, KEY) is True
    signed = dict(EXAMPLE_C, sign=sign_md5(EXAMPLE_C, KEY), sign_type="MD5")
    assert verify_md5(signed, KEY) is True


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.update(money="10.00"), id="money-reformatted"),
        pytest.param(lambda p: p.update(money="11"), id="money-changed"),
        pytest.param(lambda p: p.update(extra="1"), id="extra-param"),
        pytest.param(lambda p: p.pop("name"), id="param-removed"),
        pytest.param(lambda p: p.update(sign=p["sign"].upper()), id="upper-case-sign"),
        pytest.param(lambda p: p.pop("sign"), id="no-sign"),
        pytest.param(lambda p: p.update(sign=""), id="empty-sign"),
        pytest.param(lambda p: p.update(sign="签名"), id="non-ascii-sign"),
    ],
)
def test_verify_rejects_tampering(tamper: object) -> None:
    params = _notify_b()
    tamper(params)  # type: ignore[operator]
    assert verify_md5(params, KEY) is False


def test_verify_rejects_wrong_key() -> None:
    assert verify_md5(_notify_b(), KEY[:-1] + "j") is False


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("10.00"), "10"),
        ("10.00", "10"),
        ("10.50", "10.5"),
        (Decimal("0.01"), "0.01"),
        ("0.10", "0.1"),
        ("25.55", "25.55"),
        (0.1 + 0.2, "0.3"),  # PHP prints floats with 14 significant digits
        (99, "99"),
        ("99999999.99", "99999999.99"),
        ("0", "0"),
    ],
)
def test_format_money(amount: Decimal | str | float, expected: str) -> None:
    assert format_money(amount) == expected


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), "1e20"])
def test_format_money_rejects_what_php_would_not_print_plainly(amount: str | float) -> None:
    with pytest.raises(ValueError):
        format_money(amount)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), ("1", 1), (" 0 ", 0), ("-3", -3), (True, None), ("1.5", None), (None, None), ("", None)],
)
def test_coerce_int_accepts_numbers_sent_as_strings(value: object, expected: int | None) -> None:
    assert coerce_int(value) == expected


@pytest.mark.parametrize(
    ("body", "acked"),
    [
        ("success", True),
        ("SUCCESS", True),
        ("<p>Success!</p>", True),
        ("ok", False),
        ("sUccess", False),
        ("", False),
    ],
)
def test_notify_ack_is_a_substring_match(body: str, acked: bool) -> None:
    assert is_notify_ack(body) is acked


def test_url_with_query_uses_ampersand_when_url_has_a_query() -> None:
    assert url_with_query("http://s/n", {"a": "1 2", "b": "会"}) == "http://s/n?a=1+2&b=%E4%BC%9A"
    assert url_with_query("http://s/n?x=1", {"a": "/"}) == "http://s/n?x=1&a=%2F"


def test_epay_times_are_beijing_wall_clock() -> None:
    moment = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)
    assert format_epay_time(moment) == "2026-11-26 11:12:00"
    parsed = parse_epay_time("2026-11-26 11:12:00")
    assert parsed == moment
    assert parsed.tzinfo is EPAY_TZ
    assert parsed.isoformat() == "2026-11-26T11:12:00+08:00"
    with pytest.raises(ValueError):
        parse_epay_time("2026-11-26T11:12:00")


def test_notify_retries_follow_cron_php() -> None:
    # cron.php do=notify: retried 1, 3, 19 and 55 minutes after the first try; the run an hour after the 5th
    # failure only gives up (notify=-1).
    assert [t / 60 for t in itertools.accumulate(NOTIFY_RETRY_DELAYS)] == [1, 3, 19, 55]
