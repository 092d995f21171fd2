"""``config/channels.yaml``: the payment channels, their credentials, probes and routing weights.

This file is shared with the shop, which reads the ``weight`` values; paymon only ever rewrites those.

``currency`` (an ISO 4217 code, stored uppercase) defaults per kind (:data:`DEFAULT_CURRENCY`). The kinds whose
protocol has no currency field and always charges CNY (:data:`FIXED_CURRENCY`) refuse any other value at load,
rather than ignore it: a channel configured in USD whose probes charge CNY would be a lie in the config.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, ConfigDict, Field, PlainValidator, model_validator

from monitor.config.fields import (
    ConfigModel,
    HttpUrl,
    PositiveDuration,
    SecretValue,
    Slug,
    TimeZoneName,
    invalid,
)
from monitor.config.maintenance import MaintenanceWindow

__all__ = [
    "CHANNEL_KINDS",
    "DEFAULT_CURRENCY",
    "FIXED_CURRENCY",
    "MAX_WEIGHT",
    "TIERS",
    "BalanceProbe",
    "ChannelConfig",
    "ChannelsFile",
    "Expect",
    "Probes",
    "QueryProbe",
    "TestOrderProbe",
]

ChannelKind = Literal["epay", "epay_v2", "alipay_f2f", "wxpay_v2", "epusdt", "stripe", "paypal", "http"]
Tier = Literal["primary", "backup", "special"]
#: Every channel ``kind`` paymon knows, derived from :data:`ChannelKind`, the one place config names a kind.
CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKind)
TIERS: tuple[str, ...] = ("primary", "backup", "special")


#: The currency of a channel whose ``currency`` is not given, per kind (an ``http`` channel moves no money and
#: has none). Stripe's test intents are in CNY, as dujiaoka's Stripe checkout charges; PayPal's in USD, which
#: every PayPal account accepts.
DEFAULT_CURRENCY: dict[str, str] = {
    "epay": "CNY", "epay_v2": "CNY", "alipay_f2f": "CNY", "wxpay_v2": "CNY", "epusdt": "CNY", "stripe": "CNY",
    "paypal": "USD",
}
#: Kinds whose protocol fixes the currency (CNY: epay, Alipay and WeChat Pay amounts; epusdt's CNY ``amount``).
FIXED_CURRENCY: frozenset[str] = frozenset({"epay", "epay_v2", "alipay_f2f", "wxpay_v2", "epusdt"})
#: The largest routing weight a channel may have (shops weigh channels in the tens or hundreds).
MAX_WEIGHT = 10_000
_ISO_4217 = re.compile(r"^[A-Za-z]{3}$")


def _currency(value: str) -> str:
    if not _ISO_4217.fullmatch(value):
        raise invalid(f"expected an ISO 4217 currency code of three letters like 'USD' or 'CNY', got {value!r}")
    return value.upper()


Currency = Annotated[str, AfterValidator(_currency)]


def _json_scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid("expected a finite number")
    if isinstance(value, str | int | float | bool):
        return value
    raise invalid("expected a string, a number or true/false")


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise invalid(f"{value!r} is listed twice")
        seen.add(value)
    return values


JsonScalar = Annotated[str | int | float | bool, PlainValidator(_json_scalar)]
HttpStatus = Annotated[int, Field(ge=100, le=599)]


class Expect(ConfigModel):
    """What a generic ``http`` query probe must see to count as ``ok`` (default: any 2xx).

    ``json`` maps a dotted field path of the JSON body (``data.status``) to the value it must equal.
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    status: tuple[HttpStatus, ...] = ()
    json_: dict[str, JsonScalar] = Field(default_factory=dict, alias="json")
    max_latency: PositiveDuration | None = None


class QueryProbe(ConfigModel):
    """The order-query probe: cheap, read-only, run often."""

    every: PositiveDuration = timedelta(seconds=30)
    timeout: PositiveDuration = timedelta(seconds=5)
    url: HttpUrl | None = None
    expect: Expect | None = None


class TestOrderProbe(ConfigModel):
    """Create the smallest order the gateway accepts, check its pay URL / QR, never pay it, close it."""

    __test__ = False  # not a pytest test class, despite the name

    every: PositiveDuration = timedelta(minutes=5)
    timeout: PositiveDuration = timedelta(seconds=10)
    amount: Annotated[Decimal, Field(gt=0, le=1_000_000, allow_inf_nan=False)] = Decimal("0.01")
    close: bool = True


class BalanceProbe(ConfigModel):
    """The balance / settlement probe, where the gateway has one."""

    every: PositiveDuration = timedelta(minutes=10)
    timeout: PositiveDuration = timedelta(seconds=5)


class Probes(ConfigModel):
    """Which probes run against a channel; a probe that is absent does not run."""

    query: QueryProbe | None = None
    test_order: TestOrderProbe | None = None
    balance: BalanceProbe | None = None


class ChannelConfig(ConfigModel):
    """One payment channel: how to reach it, how to probe it, and its routing weight."""

    id: Slug
    name: str
    kind: ChannelKind
    tier: Tier = "primary"
    methods: Annotated[tuple[Slug, ...], AfterValidator(_unique)] = ()
    weight: Annotated[int, Field(ge=0, le=MAX_WEIGHT)]
    fee_rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    #: ISO 4217, uppercase; the kind's default (:data:`DEFAULT_CURRENCY`) when not given.
    currency: Currency | None = None
    settlement: str | None = None
    endpoint: HttpUrl | None = None
    credentials: dict[str, SecretValue] = Field(default_factory=dict)
    timezone: TimeZoneName = "Asia/Shanghai"
    pay_timeout: PositiveDuration | None = None
    #: The shop's notify URL for this channel; ``reconcile.replay_notify`` re-sends lost orders' notifies there.
    notify_url: HttpUrl | None = None
    probes: Probes = Field(default_factory=Probes)
    maintenance: tuple[MaintenanceWindow, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and "id" in data:
            return {**data, "name": data["id"]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _currency_defaults_to_the_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("currency") is None and data.get("kind") in DEFAULT_CURRENCY:
            return {**data, "currency": DEFAULT_CURRENCY[data["kind"]]}
        return data

    @model_validator(mode="after")
    def _currency_fixed_by_the_protocol(self) -> ChannelConfig:
        fixed = DEFAULT_CURRENCY.get(self.kind)
        if self.kind in FIXED_CURRENCY and self.currency != fixed:
            raise invalid(f"a channel of kind {self.kind!r} always charges in {fixed} (its protocol has no "
                          f"currency field): remove 'currency' or set it to {fixed}", at="currency")
        return self

    @model_validator(mode="after")
    def _needs_an_endpoint(self) -> ChannelConfig:
        if self.endpoint is None and not (
            self.kind == "http" and self.probes.query and self.probes.query.url
        ):
            if self.kind == "http":
                raise invalid("required (or give probes.query.url)", at="endpoint")
            raise invalid("required for a channel of kind " + repr(self.kind), at="endpoint")
        return self


def _at_least_one(channels: tuple[ChannelConfig, ...]) -> tuple[ChannelConfig, ...]:
    if not channels:
        raise invalid("list at least one channel")
    return channels


class ChannelsFile(ConfigModel):
    """The whole of ``channels.yaml``: one key, ``channels``, a non-empty list."""

    channels: Annotated[tuple[ChannelConfig, ...], AfterValidator(_at_least_one)]
