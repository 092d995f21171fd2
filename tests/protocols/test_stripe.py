"""Stripe's money units: the amount a probe sends is never below the configured one, never a fraction of a unit
the currency cannot express, and always one Stripe accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from monitor.protocols.stripe import charge_amount, from_minor_units, to_minor_units


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("0.01", "cny", 50),  # below Stripe's floor: raised to it
        ("1.234", "usd", 124),  # a fraction of a cent: rounded up, never down
        ("0.01", "jpy", 50),  # zero-decimal: 0.01 yen is 1 yen, then the floor (50 yen)
        ("120.4", "jpy", 121),
        ("1.2341", "kwd", 1240),  # three-decimal: thousandths, the last digit 0
        ("3.5", "isk", 400),  # two-decimal on the wire, whole krónur only
    ],
)
def test_charge_amount(amount: str, currency: str, minor: int) -> None:
    assert charge_amount(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) >= Decimal(amount)


@pytest.mark.parametrize(("amount", "currency", "minor"), [("10.50", "usd", 1050), ("500", "jpy", 500),
                                                           ("1.25", "kwd", 1250)])
def test_minor_units_round_trip(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)
