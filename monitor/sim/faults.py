"""Per-channel fault knobs of the simulated gateways, changeable while the simulator runs.

A :class:`Faults` instance belongs to one simulated channel. The gateway reads it on every request (latency,
HTTP 500, hang, broken body, maintenance replies, bad signatures) and on every simulated buyer (pay
probability, callback delay, dropped and duplicated callbacks), and its balance bookkeeping reads the
settlement knobs, so ``faults.update(error_rate=0.5)`` takes effect on the next request. Random draws come from the
``random.Random`` the caller passes in, which keeps a seeded simulation reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["KNOBS", "Faults", "RequestFault", "roll"]

#: What the gateway does to a request instead of answering it normally.
RequestFault = Literal["hang", "error", "bad_json", "maintenance"]

_RATES = frozenset({
    "error_rate", "hang_rate", "bad_json_rate", "maintenance_rate", "bad_signature_rate", "pay_probability",
    "callback_drop_rate", "duplicate_callback_rate", "held_rate", "refund_rate", "paying_rate",
})
_DURATIONS = frozenset({"latency_s", "latency_jitter_s", "callback_delay_s", "callback_jitter_s"})
_AMOUNTS = frozenset({"balance_growth_per_min"})
_FLAGS = frozenset({"settlement_stall", "merchant_banned"})


def roll(rate: float, rng: random.Random) -> bool:
    """True with probability ``rate``. Draws nothing at 0 and always hits at 1: those settings are exact."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return rng.random() < rate


@dataclass(slots=True)
class Faults:
    """Fault knobs of one simulated channel. Rates are fractions in [0, 1]; durations are seconds >= 0."""

    #: Delay added to every request before it is answered ...
    latency_s: float = 0.0
    #: ... plus a uniformly random extra in [0, latency_jitter_s] (the latency distribution).
    latency_jitter_s: float = 0.0
    #: Fraction of requests answered with HTTP 500 and an empty body.
    error_rate: float = 0.0
    #: Fraction of requests that never get an answer: the server waits until the client gives up.
    hang_rate: float = 0.0
    #: Fraction of requests answered HTTP 200 with a malformed body (HTML where JSON/XML was expected).
    bad_json_rate: float = 0.0
    #: Fraction of requests answered with the protocol's own "under maintenance" reply (well-formed).
    maintenance_rate: float = 0.0
    #: Fraction of signed replies and notifies whose signature is corrupted.
    bad_signature_rate: float = 0.0
    #: Chance that a simulated buyer who reaches the pay page pays.
    pay_probability: float = 0.9
    #: Seconds between the payment and the async notify to the shop ...
    callback_delay_s: float = 0.5
    #: ... plus a uniformly random extra in [0, callback_jitter_s] (the callback delay distribution).
    callback_jitter_s: float = 0.0
    #: Fraction of paid orders whose notify is never sent: the buyer paid, the shop never hears (a lost
    #: order).
    callback_drop_rate: float = 0.0
    #: Fraction of notifies delivered twice (gateways retry; shops must be idempotent).
    duplicate_callback_rate: float = 0.0
    #: Fraction of paying buyers whose money the gateway only holds, never completing the payment (held funds):
    #: epay status 3 已冻结 on an EP-old server, 4 预授权 on EP-new (V1 and V2), with no pay time and no notify.
    held_rate: float = 0.0
    #: Fraction of paid orders refunded in full right after the payment: epay status 2, Alipay ``TRADE_CLOSED``,
    #: WeChat ``REFUND`` (the payment's notify still follows the callback knobs).
    refund_rate: float = 0.0
    #: WeChat Pay only: fraction of paying buyers who never finish entering their password (``USERPAYING``, not
    #: final; no notify).
    paying_rate: float = 0.0
    #: Settlements stop: the balance is never paid out (a 结算 stall).
    settlement_stall: bool = False
    #: Unsettled balance added per minute by sales the simulator does not model (money units, >= 0).
    balance_growth_per_min: float = 0.0
    #: The gateway has banned the merchant (epay and epay_v2 only; ``pre_user.status`` 0). As on the real
    #: EP-old/EP-new servers, V1 ``act=query`` says ``active`` 0, V2 ``api/merchant/info`` says ``status`` 0,
    #: every create is refused with 商户已封禁，无法支付！, and order queries still answer normally.
    merchant_banned: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name)))

    def update(self, **changes: float | bool) -> None:
        """Change some knobs at once; all are validated before any is applied.

        Raises ``ValueError`` for an unknown knob name or a value out of range.
        """
        checked = {name: _checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def request_fault(self, rng: random.Random) -> RequestFault | None:
        """Decide what happens to one request: hang, HTTP 500, a malformed body, a maintenance reply, or
        nothing (None)."""
        if roll(self.hang_rate, rng):
            return "hang"
        if roll(self.error_rate, rng):
            return "error"
        if roll(self.bad_json_rate, rng):
            return "bad_json"
        if roll(self.maintenance_rate, rng):
            return "maintenance"
        return None

    def latency(self, rng: random.Random) -> float:
        """This request's added delay in seconds."""
        return self.latency_s + (rng.uniform(0.0, self.latency_jitter_s) if self.latency_jitter_s > 0 else 0.0)

    def callback_delay(self, rng: random.Random) -> float:
        """This notify's delay after the payment, in seconds."""
        extra = rng.uniform(0.0, self.callback_jitter_s) if self.callback_jitter_s > 0 else 0.0
        return self.callback_delay_s + extra

    def bad_signature(self, rng: random.Random) -> bool:
        """Whether to corrupt this reply's or notify's signature."""
        return roll(self.bad_signature_rate, rng)


KNOBS: frozenset[str] = _RATES | _DURATIONS | _AMOUNTS | _FLAGS


def _checked(name: str, value: object) -> float | bool:
    if name not in KNOBS:
        known = ", ".join(sorted(KNOBS))
        raise ValueError(f"unknown fault knob {name!r} (known: {known})")
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"fault knob {name!r} is true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"fault knob {name!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise ValueError(f"fault knob {name!r} must be a finite number >= 0, got {value!r}")
    if name in _RATES and number > 1.0:
        raise ValueError(f"fault knob {name!r} is a fraction in [0, 1], got {value!r}")
    return number
