"""Early drop detector (``detector: early``): the CUSUM of ``detectors`` fed the partial evidence of pending orders.
Pure.

**Why.** The CUSUM of :mod:`monitor.alerts.detectors` reads *decided* orders, and an unpaid order is decided only
at ``pay_timeout`` (15 minutes by default): every verdict on a drop comes at least that late in wall-clock time.
Yet an order still unpaid at age ``a`` already says something. Most buyers pay within a minute or two, so under
the channel's usual behaviour an order unpaid after three minutes will probably never be paid.

**Time to pay** (``learn_pay_delays``). For each channel the delays ``d = success − created`` of its recent
orders that succeeded (newest ``max_delays``, orders created while the rule was firing left out), mixed with a
prior pseudo-sample ``PRIOR_DELAYS_S`` (20 delays, most 30–120 s, a tail to 10 min) so a quiet channel has a
sensible shape. ``F(a)`` is the share of that mixed sample ``≤ a``: the probability that an order which will be
paid within the timeout is paid by age ``a``. ``F(timeout) = 1``.

**Evidence of one order** at the moment paymon knows the data up to (``known``, see below), under conversion ``p``
(the probability an order is paid within the timeout):

- paid (at any age): probability ``p · f(d)``; the time density ``f`` is the same under both hypotheses (a drop
  changes whether buyers pay, not how fast those who pay do), so its likelihood ratio is ``p1 / p0``;
- unpaid at age ``a``: probability ``1 − p · F(a)``, likelihood ratio ``(1 − p1 F(a)) / (1 − p0 F(a))``;
- unpaid at the timeout (or expired): ``F = 1``, the ratio ``(1 − p1) / (1 − p0)`` of a decided failure.

So ``llr(order) = log`` of that ratio: exactly the decided CUSUM's increments once the order is decided, ``0`` for
an order just created (``F(0) = 0``: no evidence yet), rising towards the failure's increment as the order ages
unpaid. For every age it is a proper likelihood ratio: ``E_p0[LR] = p0 F · p1/p0 + (1 − p0 F)(1 − p1 F)/(1 − p0 F)
= 1``, so the product over orders is the likelihood ratio of everything observed so far, and it stays a martingale
under the baseline as time passes and pending orders are paid or age.

**Statistic** (``early_update``). Orders in creation order; ``p0``, ``p1`` and ``h`` exactly as the CUSUM's
(``params_for``: the same baseline, design drop and ``false_alarms_per_week`` budget). Orders created before
``known − timeout`` are decided: they feed the persisted Page recursion ``S = max(0, S + llr)`` once, as the CUSUM
does. Orders created since are pending or freshly decided: each cycle the recursion is continued from ``S`` over
them with their current ``llr`` (not persisted, since their evidence still changes), and the rule alarms when any
point of either recursion reaches ``h``. After an alarm ``S`` restarts from 0 and every order created so far is
consumed. The value of ``S`` at the end of the live part equals ``max_k Σ_{i≥k} llr_i`` (Page's CUSUM as a
maximum over change points), evaluated at the current evidence.

**False alarms.** Looking at a statistic whose increments are revised each cycle is more looks than the decided
CUSUM takes, and increments are smaller (no 1.8-nat overshoot for every failure), so the same ``h`` gives more
false alarms than the decided CUSUM's 0.4–0.5× of the budget. ``bench/detection.py`` measures the rate in
simulated weeks at 1, 10 and 100 orders a minute with a 10 s evaluation cycle; ``H_MARGIN`` nats are added to
``h`` so it stays within the budget there (the measurements are beside the constant).

**Known time.** Ages are measured to ``known``: the newest event time in the order data (never after ``now``).
An order source read every minute (a MySQL poll, a log shipped in batches) would otherwise make orders paid since
the last read look unpaid, and a lagging source could page by itself. A quiet shop's newest event is older than
``now``, which only makes the detector slower, never falsely sure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from monitor.alerts.detectors import CusumParams, CusumState

__all__ = [
    "H_MARGIN",
    "PRIOR_DELAYS_S",
    "OrderTimes",
    "PayDelays",
    "early_params",
    "early_update",
    "learn_pay_delays",
    "order_llr",
]

#: The prior time-to-pay pseudo-sample (seconds): most buyers pay within 30–120 s, some take up to 10 minutes.
PRIOR_DELAYS_S = (20.0, 30.0, 40.0, 45.0, 50.0, 60.0, 60.0, 70.0, 80.0, 90.0,
                  90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 240.0, 300.0, 420.0, 600.0)
#: How many of a channel's newest paid orders its time-to-pay distribution is learned from.
MAX_DELAYS = 5_000
#: Nats added to the CUSUM's ``h`` for the extra looks. Measured with ``bench/detection.py``'s wall-clock part (8
#: simulated weeks per rate, budget 1 a week): with no margin 0.7 / 1.3 / 7 false alarms a week at 1 / 10 / 100
#: orders a minute, with 1.0 nat 0.5 / 0.4 / 1.6, with 2.5 nats 0 / 0 / 0.125.
H_MARGIN = 2.5


@dataclass(frozen=True)
class OrderTimes:
    """One channel's orders, oldest created first, as Unix seconds: ``created``; ``success`` (NaN: not paid within
    its timeout, or not yet); ``failed`` (NaN: not decided failed, or not yet)."""

    created: np.ndarray
    success: np.ndarray
    failed: np.ndarray

    @staticmethod
    def empty() -> OrderTimes:
        e = np.empty(0)
        return OrderTimes(e, e, e)

    def after(self, t: float) -> OrderTimes:
        """The orders created after ``t``."""
        i = int(np.searchsorted(self.created, t, side="right"))
        return OrderTimes(self.created[i:], self.success[i:], self.failed[i:])

    def __len__(self) -> int:
        return len(self.created)


@dataclass(frozen=True)
class PayDelays:
    """A time-to-pay distribution: the sorted delays (s) of the paid orders it was learned from plus the prior."""

    sample: np.ndarray
    learned: int = 0
    timeout_s: float = 900.0

    def cdf(self, age: np.ndarray) -> np.ndarray:
        """``F(age)``: the share of paid orders paid by that age (1 from the timeout on)."""
        f = np.searchsorted(self.sample, age, side="right") / len(self.sample)
        return np.where(age >= self.timeout_s, 1.0, f)


@dataclass(frozen=True)
class EarlyParams:
    """The CUSUM's tuning with the early detector's threshold (``h`` plus ``H_MARGIN``)."""

    cusum: CusumParams
    h: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "h", self.cusum.h + H_MARGIN)


def early_params(cusum: CusumParams) -> EarlyParams:
    return EarlyParams(cusum)


def learn_pay_delays(orders: OrderTimes, timeout_s: float,
                     firing: Sequence[tuple[datetime, datetime | None]] = (), *,
                     max_delays: int = MAX_DELAYS, prior: Sequence[float] = PRIOR_DELAYS_S) -> PayDelays:
    """The channel's time-to-pay distribution from its paid orders (those created in a firing period left out)."""
    paid = ~np.isnan(orders.success)
    keep = paid.copy()
    for start, end in firing:
        inside = orders.created >= start.timestamp()
        if end is not None:
            inside &= orders.created < end.timestamp()
        keep &= ~inside
    delays = (orders.success - orders.created)[keep][-max_delays:]
    delays = np.clip(delays, 0.0, timeout_s)
    sample = np.sort(np.concatenate([delays, np.minimum(np.asarray(prior, dtype=float), timeout_s)]))
    return PayDelays(sample, learned=len(delays), timeout_s=timeout_s)


def order_llr(orders: OrderTimes, known_s: float, params: CusumParams, delays: PayDelays) -> np.ndarray:
    """Each order's log-likelihood ratio ("dropped to p1" against "baseline p0") on what is known at ``known_s``."""
    p0, p1 = params.p0, params.p1
    paid = ~np.isnan(orders.success) & (orders.success <= known_s)
    failed = ~paid & ~np.isnan(orders.failed) & (orders.failed <= known_s)
    f = delays.cdf(np.maximum(known_s - orders.created, 0.0))
    f = np.where(failed, 1.0, f)
    pending = np.log((1.0 - p1 * f) / (1.0 - p0 * f))
    return np.where(paid, math.log(p1 / p0), pending)


def _page(s0: float, llr: np.ndarray) -> tuple[np.ndarray, float]:
    """Page's recursion ``S_j = max(0, S_{j-1} + llr_j)`` from ``s0``: the path, and its last value (``s0`` if empty).
    Closed form: ``S_j = C_j − min(−s0, C_1..C_j)`` with ``C`` the running sum."""
    if len(llr) == 0:
        return llr, s0
    c = np.cumsum(llr)
    path = c - np.minimum(np.minimum.accumulate(c), -s0)
    return path, float(path[-1])


def early_update(state: CusumState, orders: OrderTimes, params: EarlyParams, delays: PayDelays,
                 now: datetime, known: datetime) -> tuple[CusumState, bool, float]:
    """One cycle of the early detector (see the module docstring).

    ``orders``: the channel's orders, oldest created first; ``known``: the time the data is known up to (≤ now).
    ``state.through`` (Unix s): orders created up to then are in ``state.s`` already (None: a new state, which
    starts at ``known − timeout`` without replaying decided history). Returns the new state, whether it alarmed,
    and the statistic (its largest value this cycle when it alarmed, else ``S`` at the end of the live part).
    """
    known_s = min(known, now).timestamp()
    cutoff = known_s - delays.timeout_s
    through = state.through if state.through is not None else cutoff
    fresh = orders.after(through)
    llr = order_llr(fresh, known_s, params.cusum, delays)
    decided = int(np.searchsorted(fresh.created, cutoff, side="right"))
    path_d, s = _page(state.s, llr[:decided])
    path_l, live = _page(s, llr[decided:])
    peak = max(float(path_d.max()) if len(path_d) else 0.0, float(path_l.max()) if len(path_l) else 0.0)
    alarmed = peak >= params.h
    if alarmed:
        new = replace(state, s=0.0, through=known_s, updated_at=now.timestamp(), count=state.count + len(fresh),
                      alarms=state.alarms + 1)
        return new, True, peak
    new = replace(state, s=s, through=max(through, cutoff), updated_at=now.timestamp(),
                  count=state.count + decided, alarms=state.alarms)
    return new, False, live


def order_times(frame: Mapping[str, np.ndarray]) -> OrderTimes:
    """An :class:`OrderTimes` from arrays named ``created``, ``success``, ``failed`` (sorted by ``created`` here)."""
    order = np.argsort(frame["created"], kind="stable")
    return OrderTimes(*(np.asarray(frame[k], dtype=float)[order] for k in ("created", "success", "failed")))
