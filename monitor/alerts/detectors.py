"""Statistical drop detector (``detector: cusum``): a Bernoulli CUSUM against the channel's own baseline. Pure.

Every decided order (or probe) is a Bernoulli outcome ``x`` (1 = success). The detector asks, one outcome at a
time, whether the success probability has dropped from the channel's usual ``p0`` to a worse ``p1``.

**Baseline** ``p0`` (``estimate_baseline``). Outcomes of the last ``lookback`` (default 7 days), newest first,
up to about ``max_outcomes`` (default 20,000: at 100 orders/min the newest ~3 h), leaving out every outcome
decided while the rule was firing (a known outage must not teach the detector that failing is normal). With
``s`` successes and ``f`` failures kept and a Beta(a, b) prior (default a = 9, b = 1: ten pseudo-orders at
90 %), ``p0`` is the posterior mean ``(s + a) / (s + f + a + b)``, so a quiet channel with only successes never
gets ``p0 = 1`` (which would make a single failure infinitely surprising). The channel's **volume** ``V``
(outcomes per week) is ``(s + f) / span``, where ``span`` is the time the kept history covers minus the firing
time inside it. Fewer than ``min_outcomes`` (100) outcomes, or less than ``min_span`` (1 h) of history, gives no
baseline (``None``): the rule gives no verdict.

**Design drop.** The CUSUM is tuned to one alternative ``p1 = p0 - drop`` (default ``drop = 0.25``; never below
``p0 / 2``): for ``p0 = 0.95``, ``p1 = 0.70``. A single design must catch both small and large drops. The cost of
a mismatch is the efficiency ``KL(q‖p0) / E_q[llr]`` for a true post-change rate ``q``; with ``p0 = 0.95`` and
``p1 = 0.70`` it is 1.12 for ``q = 0.5``, 1.23 for ``q = 0.8`` and 1.67 for ``q = 0`` (an outage), so every drop
of the benchmark grid stays within 2x of the optimal delay. ``p1 = 0.5`` (the mid-point) would never detect a
95 % → 80 % drop (its expected LLR there is negative); ``p1 = 0.8`` is 2.2x slow on outages.

**Statistic** (``update``). Per outcome the log-likelihood ratio (in nats) of "rate is p1" against "rate is p0",

    llr(x) = x · log(p1 / p0) + (1 − x) · log((1 − p1) / (1 − p0)),

negative for a success, positive for a failure, and the one-sided (upper) CUSUM

    S_0 = 0,   S_n = max(0, S_{n−1} + llr(x_n)),   alarm when S_n ≥ h, then S = 0 again.

``S`` is never negative, and a stream of successes keeps it at 0. Before a change ``E[llr] = −KL(p0‖p1) < 0``
(``S`` hugs 0); after a drop to ``q`` the drift is ``E_q[llr] > 0`` and ``S`` climbs to ``h``.

**Threshold from the false-alarm budget** (``params_for``). ``false_alarms_per_week`` at volume ``V`` means an
in-control average run length of ``ARL0 = V / false_alarms_per_week`` outcomes between false alarms. ``h`` solves
Siegmund's approximation for an LLR CUSUM (whose increments satisfy ``E0[exp(llr)] = 1``):

    ARL0 ≈ (e^h − h − 1) / KL(p0‖p1).

It ignores the overshoot of ``S`` over ``h`` (a failure jumps by ``log((1−p1)/(1−p0))``, 1.8 nats here), which
makes the true ARL0 longer: by simulation (tests, ``bench/detection.py``) the measured false-alarm rate is
0.4-0.5x the target. That margin is kept on purpose: it absorbs the error of the estimated ``p0`` (a ``p0`` a
little too high raises the false-alarm rate) at a cost of under 1 nat of ``h`` (~10 % of the delay of a small
drop). The crude ``h = log(ARL0)`` (Lorden: ARL0 ≥ e^h) is far more conservative (~0.1x the target rate).

**Delay bound** (``delay_bound``). Lorden's asymptotic lower bound on the worst-case detection delay of any
procedure with that false-alarm rate, for a drop to ``q``: ``log(ARL0) / KL(q‖p0)`` outcomes, with the Bernoulli
``KL(q‖p) = q log(q/p) + (1−q) log((1−q)/(1−p))``. The CUSUM tuned to the true ``q`` attains it as ARL0 → ∞.

**Probes.** A probe result is a Bernoulli outcome too (``ok`` or not): feed probe results instead of orders, with
the probe history as baseline and probes per week as volume. The CUSUM assumes independent outcomes: back-to-back
probe failures during one gateway hiccup are correlated, so expect more alarms than the budget on probe streams.

**Units and time.** The statistic is kept in nats in ``CusumState`` (plain floats/ints, persisted by the rule
engine). The detector sees outcomes when they are decided; a failure is decided only at ``pay_timeout`` after the
order was created, which adds to every delay in real time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "DEFAULT_CONFIG",
    "WEEK_S",
    "Baseline",
    "CusumConfig",
    "CusumParams",
    "CusumState",
    "Tally",
    "arl0_siegmund",
    "bernoulli_kl",
    "delay_bound",
    "design_p1",
    "estimate_baseline",
    "params_for",
    "threshold_for_arl0",
    "update",
]

WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes decided at ``at``: one outcome (``Tally.one``) or a bucket starting at ``at`` (e.g. a minute)."""

    at: datetime
    successes: int
    failures: int

    @staticmethod
    def one(at: datetime, ok: bool) -> Tally:
        return Tally(at, int(ok), int(not ok))


@dataclass(frozen=True, slots=True)
class CusumConfig:
    """How the baseline is learned and which drop the CUSUM is tuned to (see the module docstring)."""

    lookback: timedelta = timedelta(days=7)
    max_outcomes: int = 20_000
    min_outcomes: int = 100
    min_span: timedelta = timedelta(hours=1)
    prior_successes: float = 9.0
    prior_failures: float = 1.0
    drop: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.drop < 1:
            raise ValueError(f"drop must be in (0, 1), got {self.drop}")
        if self.prior_successes <= 0 or self.prior_failures <= 0:
            raise ValueError("the Beta prior needs positive pseudo-counts")
        if self.min_outcomes < 1 or self.max_outcomes < self.min_outcomes:
            raise ValueError("need 1 <= min_outcomes <= max_outcomes")


DEFAULT_CONFIG = CusumConfig()


@dataclass(frozen=True, slots=True)
class Baseline:
    """The channel's in-control success rate and volume, learned from its own history."""

    p0: float
    successes: int
    failures: int
    span_s: float

    @property
    def outcomes(self) -> int:
        return self.successes + self.failures

    @property
    def per_week(self) -> float:
        """Observed volume: outcomes per week over the (non-firing) time the history covers."""
        return self.outcomes / self.span_s * WEEK_S


@dataclass(frozen=True, slots=True)
class CusumParams:
    """A tuned CUSUM: ``p0`` → ``p1``, threshold ``h`` (nats) for ``arl0`` in-control outcomes per false alarm."""

    p0: float
    p1: float
    h: float
    arl0: float

    @property
    def llr_success(self) -> float:
        return math.log(self.p1 / self.p0)

    @property
    def llr_failure(self) -> float:
        return math.log((1 - self.p1) / (1 - self.p0))


@dataclass(frozen=True, slots=True)
class CusumState:
    """What the rule engine persists per (rule, channel): plain numbers only.

    ``s``: the statistic (nats, ≥ 0); ``updated_at``: Unix seconds of the last update (None = never);
    ``count``: outcomes seen; ``alarms``: alarms raised since the state was created; ``through`` (the early
    detector, ``monitor.alerts.early``): Unix seconds up to which orders, by creation time, are in ``s``.
    """

    s: float = 0.0
    updated_at: float | None = None
    count: int = 0
    alarms: int = 0
    through: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        d: dict[str, float | int | None] = {"s": self.s, "updated_at": self.updated_at, "count": self.count,
                                            "alarms": self.alarms}
        if self.through is not None:
            d["through"] = self.through
        return d

    @staticmethod
    def from_dict(d: Mapping[str, float | int | None]) -> CusumState:
        at = d.get("updated_at")
        through = d.get("through")
        return CusumState(s=float(d.get("s") or 0.0), updated_at=None if at is None else float(at),
                          count=int(d.get("count") or 0), alarms=int(d.get("alarms") or 0),
                          through=None if through is None else float(through))


def bernoulli_kl(q: float, p: float) -> float:
    """KL(q‖p) in nats between Bernoulli(q) and Bernoulli(p); 0·log 0 = 0. ``p`` must be in (0, 1)."""
    if not 0 < p < 1 or not 0 <= q <= 1:
        raise ValueError(f"need 0 <= q <= 1 and 0 < p < 1, got q={q}, p={p}")
    kl = 0.0
    if q > 0:
        kl += q * math.log(q / p)
    if q < 1:
        kl += (1 - q) * math.log((1 - q) / (1 - p))
    return kl


def delay_bound(p0: float, p1: float, arl0: float) -> float:
    """Lorden's bound on the detection delay (outcomes) of a drop p0 → p1 at ``arl0``: log(ARL0) / KL(p1‖p0)."""
    return math.log(arl0) / bernoulli_kl(p1, p0)


def design_p1(p0: float, drop: float = 0.25) -> float:
    """The alternative the CUSUM is tuned to: ``p0 - drop``, but never below ``p0 / 2``."""
    return max(p0 - drop, p0 / 2)


def arl0_siegmund(h: float, p0: float, p1: float) -> float:
    """Siegmund's approximation of the in-control ARL (outcomes) of the LLR CUSUM with threshold ``h``."""
    return (math.exp(h) - h - 1) / bernoulli_kl(p0, p1)


def threshold_for_arl0(arl0: float, p0: float, p1: float) -> float:
    """The ``h`` with ``arl0_siegmund(h, p0, p1) == arl0`` (bisection; ``e^h - h - 1`` increases for h > 0)."""
    if arl0 <= 0:
        raise ValueError(f"arl0 must be positive, got {arl0}")
    target = arl0 * bernoulli_kl(p0, p1)
    lo, hi = 0.0, 1.0
    while math.exp(hi) - hi - 1 < target:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if math.exp(mid) - mid - 1 < target:
            lo = mid
        else:
            hi = mid
    return hi


def _firing_overlap(start: datetime, end: datetime, firing: Sequence[tuple[datetime, datetime | None]]) -> float:
    total = 0.0
    for f_start, f_end in firing:
        lo, hi = max(start, f_start), min(end, f_end or end)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total


def _in_firing(at: datetime, firing: Sequence[tuple[datetime, datetime | None]]) -> bool:
    return any(f_start <= at and (f_end is None or at < f_end) for f_start, f_end in firing)


def estimate_baseline(
    history: Iterable[Tally],
    now: datetime,
    firing: Sequence[tuple[datetime, datetime | None]] = (),
    config: CusumConfig = DEFAULT_CONFIG,
) -> Baseline | None:
    """The channel's baseline from its decided outcomes, or None when there is too little history.

    ``history`` in any order; tallies after ``now`` or before ``now - lookback`` are ignored, as are those whose
    ``at`` falls in a firing period ``[start, end)`` (``end`` None: still firing). The newest tallies are kept
    until ``max_outcomes`` is reached (the tally that crosses it is kept whole).
    """
    start = now - config.lookback
    kept = sorted((t for t in history if start <= t.at <= now and not _in_firing(t.at, firing)),
                  key=lambda t: t.at, reverse=True)
    s = f = 0
    oldest = now
    for t in kept:
        if s + f >= config.max_outcomes:
            break
        s += t.successes
        f += t.failures
        oldest = t.at
    span = (now - oldest).total_seconds() - _firing_overlap(oldest, now, firing)
    if s + f < config.min_outcomes or span < max(config.min_span.total_seconds(), 1e-9):
        return None
    a, b = config.prior_successes, config.prior_failures
    return Baseline(p0=(s + a) / (s + f + a + b), successes=s, failures=f, span_s=span)


def params_for(baseline: Baseline, false_alarms_per_week: float,
               config: CusumConfig = DEFAULT_CONFIG) -> CusumParams:
    """Tune the CUSUM: ``p1`` from the design drop, ``h`` for ARL0 = volume / false_alarms_per_week."""
    if false_alarms_per_week <= 0:
        raise ValueError("false_alarms_per_week must be positive")
    p0 = baseline.p0
    p1 = design_p1(p0, config.drop)
    arl0 = baseline.per_week / false_alarms_per_week
    return CusumParams(p0=p0, p1=p1, h=threshold_for_arl0(arl0, p0, p1), arl0=arl0)


def update(state: CusumState, outcomes: Sequence[bool], params: CusumParams,
           now: datetime) -> tuple[CusumState, bool, float]:
    """Feed the outcomes decided since the last update, oldest first.

    Returns the new state, whether the CUSUM alarmed, and the statistic: ``S`` at the (first) alarm when it
    alarmed, otherwise ``S`` after the batch. After an alarm ``S`` restarts from 0 and the rest of the batch is
    processed (further alarms in the same batch are counted in ``alarms``).
    """
    up, down, h = params.llr_failure, params.llr_success, params.h
    s = state.s
    alarms = 0
    at_alarm = 0.0
    for ok in outcomes:
        s += down if ok else up
        if s < 0.0:
            s = 0.0
        elif s >= h:
            if alarms == 0:
                at_alarm = s
            alarms += 1
            s = 0.0
    new = CusumState(s=s, updated_at=now.timestamp(), count=state.count + len(outcomes),
                     alarms=state.alarms + alarms)
    return new, alarms > 0, at_alarm if alarms else s
