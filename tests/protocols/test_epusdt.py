"""epusdt helpers: three signature worked examples byte for byte, Go's number formatting, amounts and JSON."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from monitor.protocols.epusdt import (
    asynq_retry_delay,
    format_number,
    go_json,
    sign,
    sign_content,
    usdt_amount,
    verify,
)

TOKEN = "epusdt_password_xasddawqe"

DOC_EXAMPLE = {
    "order_id": "20220201030210321",
    "amount": 42,
    "notify_url": "http://example.com/notify",
    "redirect_url": "http://example.com/redirect",
}
DUJIAOKA_CREATE = {
    "amount": 10.0,  # PHP (float)"10.00", sent as 10.0
    "order_id": "ABCD1234EFGH5678",
    "redirect_url": "https://shop.example.com/pay/epusdt/return_url?order_id=ABCD1234EFGH5678",
    "notify_url": "https://shop.example.com/pay/epusdt/notify_url",
}
CALLBACK = {
    "trade_id": "202203251648208648961728",
    "order_id": "ABCD1234EFGH5678",
    "amount": 10,
    "actual_amount": 1.5625,
    "token": "TNEns8t9jbWENbStkQdVQtHMGpbsYsQjZK",
    "block_transaction_id": "123333333321232132131",
    "signature": "",
    "status": 2,
}


def test_doc_example() -> None:
    assert sign_content(DOC_EXAMPLE) == (
        "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321"
        "&redirect_url=http://example.com/redirect"
    )
    assert sign(DOC_EXAMPLE, TOKEN) == "1cd4b52df5587cfb1968b0c0c6e156cd"


def test_dujiaoka_create_example() -> None:
    assert sign_content(DUJIAOKA_CREATE) == (
        "amount=10&notify_url=https://shop.example.com/pay/epusdt/notify_url&order_id=ABCD1234EFGH5678"
        "&redirect_url=https://shop.example.com/pay/epusdt/return_url?order_id=ABCD1234EFGH5678"
    )
    assert sign(DUJIAOKA_CREATE, TOKEN) == "4930dc582109142ed093398f66aadb23"


def test_callback_example_survives_a_json_round_trip() -> None:
    assert sign(CALLBACK, TOKEN) == "6d6624bc83c90223430abfbb6af24d37"
    received = json.loads(go_json({**CALLBACK, "signature": "6d6624bc83c90223430abfbb6af24d37"}))
    assert verify(received, TOKEN)
    assert not verify({**received, "amount": 10.01}, TOKEN)
    assert not verify({**received, "signature": "6D6624BC83C90223430ABFBB6AF24D37"}, TOKEN)
    assert not verify(received, TOKEN + "x")


def test_nulls_and_empty_strings_are_skipped_other_types_fail() -> None:
    assert sign({**DOC_EXAMPLE, "redirect_url": "", "extra": None}, TOKEN) == sign(
        {k: v for k, v in DOC_EXAMPLE.items() if k != "redirect_url"}, TOKEN
    )
    for bad in (True, [1], {"a": 1}):
        with pytest.raises(ValueError):
            sign({**DOC_EXAMPLE, "x": bad}, TOKEN)
        assert not verify({**DOC_EXAMPLE, "x": bad, "signature": "0" * 32}, TOKEN)
    assert not verify(DOC_EXAMPLE, TOKEN)  # no signature at all
    assert not verify({**DOC_EXAMPLE, "signature": 123}, TOKEN)


def test_sorting_is_of_the_k_v_strings() -> None:
    # "a_b=..." vs "a=...": '=' (0x3d) sorts before '_' (0x5f), so "a=" comes first.
    assert sign_content({"a_b": "1", "a": "2"}) == "a=2&a_b=1"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (10.0, "10"),
        (Decimal("10.00"), "10"),
        (7.9104, "7.9104"),
        (0.1, "0.1"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (12345678901234567890, "12345678901234567000"),  # float64, as Go decodes it
    ],
)
def test_format_number_is_go_formatfloat_f_minus_1(value: float | int | Decimal, text: str) -> None:
    assert format_number(value) == text


def test_usdt_amount_and_retry_delay() -> None:
    assert usdt_amount(10.0) == Decimal("1.5625")
    assert usdt_amount(42) == Decimal("6.5625")
    assert usdt_amount(100, Decimal("7.1")) == Decimal("14.0845")
    with pytest.raises(ValueError):
        usdt_amount(1, Decimal(0))
    assert [asynq_retry_delay(n) for n in range(3)] == [15.0, 16.0, 31.0]


def test_go_json() -> None:
    assert go_json({"b": 10.0, "a": 1.5625, "s": "<a&b>中", "n": None, "t": True, "l": [1, 1e-7]}) == (
        '{"b":10,"a":1.5625,"s":"\\u003ca\\u0026b\\u003e中","n":null,"t":true,"l":[1,1e-7]}'
    )
