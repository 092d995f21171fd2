"""Detection delay and false alarms of the CUSUM drop detector against a plain success-ratio rule.

Simulated outcome streams at 1, 10 and 100 orders/min (Poisson orders each minute, each a success with
probability p), 50 seeds each. Per (rate, seed): 7 days at 95 % to learn the baseline, then one more week at 95 %
(no change: every alarm is a false alarm), then a drop to 50 %, 80 % or 0 % (one branch per drop, from the same
state) followed minute by minute for up to 12 h.

Both detectors see the outcomes minute by minute, as the rule engine would:

- **CUSUM** (``monitor.alerts.detectors``, ``false_alarms_per_week: 1``, default config): baseline re-learned
  every hour from the last 7 days (hourly tallies), the statistic updated every minute. Delay in orders counts the
  orders after the change up to and including the one that raised the alarm.
- **plain rule**: ``success_ratio < 0.8`` over the last 15 minutes with at least 20 decided orders (the project's
  default ``min_orders``), ``recover: 0.9``, no ``for``, through the project's alert lifecycle, evaluated at the end
  of every minute. Delay in orders counts the orders after the change up to the end of the firing minute.

**Wall clock** (the second table): orders in continuous time, each paid after a realistic delay (85 % of buyers
within 30–120 s, the rest within 2–10 minutes) or decided failed at the 15-minute pay timeout; the detectors run
every 10 s (the daemon's cycle) on what is known then, for 1, 10 and 100 orders/min and drops 95 → 50 %, 95 → 80 %,
95 → 0 % and 40 → 20 %: the median minutes from the drop to the alert of (a) the CUSUM on decided orders, (b) the
early detector (``monitor.alerts.early``, pending orders' partial evidence) and (c) a plain 15-minute rule
(threshold p0 − 0.15), and each one's false alarms in ``--fa-weeks`` simulated weeks without a change.

Delays in minutes run from the change to the end of the minute in which the alarm was raised. The bound is
``log(ARL0) / KL(p1‖p0)`` orders with the true p0, p1 and ARL0 = orders per week / 1. A drop not detected within
12 h counts as an infinite delay (a median of "never" when more than half the seeds miss it).

    .venv/bin/python bench/detection.py [--seeds 50] [--fa-weeks 8]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor.alerts.detectors import (
    CusumParams,
    CusumState,
    Tally,
    delay_bound,
    estimate_baseline,
    params_for,
    update,
)
from monitor.alerts.early import EarlyParams, OrderTimes, PayDelays, early_params, early_update, learn_pay_delays
from monitor.alerts.lifecycle import RuleSpec, step
from monitor.models import AlertState

RATES = (1, 10, 100)
P0 = 0.95
DROPS = (0.50, 0.80, 0.0)
FA_PER_WEEK = 1.0
WEEK_MIN = 7 * 24 * 60
HISTORY_MIN = WEEK_MIN
HORIZON_MIN = 12 * 60
WINDOW_MIN = 15
MIN_ORDERS = 20
T0 = datetime(2026, 1, 5, tzinfo=UTC)
PLAIN = RuleSpec("low_success", "success_ratio", "<", 0.8, recover=0.9)


@dataclass
class Stream:
    """Per-minute successes and failures of one simulated channel, and each minute's outcomes in order."""

    succ: list[int]
    fail: list[int]
    outcomes: list[list[bool]]

    def extend(self, rng: np.random.Generator, rate: float, p: float, minutes: int) -> None:
        counts = rng.poisson(rate, minutes)
        x = rng.random(int(counts.sum())) < p
        edges = np.concatenate(([0], np.cumsum(counts)))
        for i in range(minutes):
            chunk: list[bool] = x[edges[i]:edges[i + 1]].tolist()
            s = sum(chunk)
            self.succ.append(s)
            self.fail.append(len(chunk) - s)
            self.outcomes.append(chunk)

    def params(self, minute: int) -> CusumParams | None:
        """The CUSUM tuned at the start of ``minute`` (an hour boundary) from hourly tallies of the last 7 days."""
        now = T0 + timedelta(minutes=minute)
        tallies = []
        for h0 in range(max(0, minute - HISTORY_MIN), minute, 60):
            tallies.append(Tally(T0 + timedelta(minutes=h0), sum(self.succ[h0:h0 + 60]), sum(self.fail[h0:h0 + 60])))
        base = estimate_baseline(tallies, now)
        return None if base is None else params_for(base, FA_PER_WEEK)

    def ratio(self, minute: int) -> float | None:
        """The plain rule's signal at the end of ``minute``: success ratio over the last 15 minutes."""
        lo = max(0, minute - WINDOW_MIN + 1)
        s, f = sum(self.succ[lo:minute + 1]), sum(self.fail[lo:minute + 1])
        return None if s + f < MIN_ORDERS else s / (s + f)


@dataclass
class Detectors:
    cusum: CusumState
    params: CusumParams | None
    plain: AlertState


def advance(stream: Stream, det: Detectors, minute: int) -> tuple[int | None, bool]:
    """Run both detectors over one minute. Returns (index of the alarming outcome or None, plain rule fired)."""
    now = T0 + timedelta(minutes=minute + 1)
    if minute % 60 == 0:
        det.params = stream.params(minute)
    hit: int | None = None
    if det.params is not None:
        before = det.cusum
        det.cusum, fired, _ = update(before, stream.outcomes[minute], det.params, now)
        if fired:  # replay the minute outcome by outcome to find which order raised the alarm
            s = before
            for j, ok in enumerate(stream.outcomes[minute]):
                s, one, _ = update(s, [ok], det.params, now)
                if one:
                    hit = j
                    break
    det.plain, events = step(det.plain, PLAIN, stream.ratio(minute), now)
    return hit, any(e.kind == "firing" for e in events)


Delay = tuple[float, float]  # (orders, minutes); inf = not detected within the horizon


@dataclass
class SeedResult:
    cusum_fa: int
    plain_fa: int
    delays: list[tuple[Delay, Delay]]  # per drop: (CUSUM, plain rule)


def one_seed(rate: int, seed: int) -> SeedResult:
    rng = np.random.default_rng([rate, seed])
    stream = Stream([], [], [])
    stream.extend(rng, rate, P0, HISTORY_MIN + WEEK_MIN)
    det = Detectors(CusumState(), None, AlertState(PLAIN.name, "c1"))
    plain_fa = 0
    for m in range(HISTORY_MIN, HISTORY_MIN + WEEK_MIN):
        _, fired = advance(stream, det, m)
        plain_fa += fired
    out = SeedResult(det.cusum.alarms, plain_fa, [])
    change = HISTORY_MIN + WEEK_MIN
    for k, q in enumerate(DROPS):
        branch = Stream(stream.succ[:], stream.fail[:], stream.outcomes[:])
        branch.extend(np.random.default_rng([rate, seed, k + 1]), rate, q, HORIZON_MIN)
        d = Detectors(det.cusum, det.params, AlertState(PLAIN.name, "c1"))
        cusum: Delay = (math.inf, math.inf)
        plain: Delay = (math.inf, math.inf)
        orders = 0
        for i in range(HORIZON_MIN):
            hit, fired = advance(branch, d, change + i)
            n = len(branch.outcomes[change + i])
            if hit is not None and math.isinf(cusum[0]):
                cusum = (orders + hit + 1, i + 1)
            orders += n
            if fired and math.isinf(plain[0]):
                plain = (orders, i + 1)
            if not (math.isinf(cusum[0]) or math.isinf(plain[0])):
                break
        out.delays.append((cusum, plain))
    return out


# --- Wall clock: orders in continuous time, decided failures only at the pay timeout -----------------------------

CYCLE_S = 10.0  # the daemon's evaluation cycle
TIMEOUT_S = 900.0  # the default pay_timeout
WALL_CASES = ((0.95, 0.50), (0.95, 0.80), (0.95, 0.0), (0.40, 0.20))
WARMUP_S = 3600.0  # the detectors run this long in control before the change
WALL_HORIZON_S = 3 * 3600.0


def pay_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    """Realistic time to pay (s): 85 % of buyers pay within 30–120 s, the rest within 2–10 minutes."""
    slow = rng.random(n) < 0.15
    return np.where(slow, rng.uniform(120, 600, n), rng.uniform(30, 120, n))


def wall_orders(rng: np.random.Generator, rate: float, segments: list[tuple[float, float, float]]) -> OrderTimes:
    """Orders created by a Poisson stream of ``rate`` a minute over ``(start_s, end_s, p)`` segments, each paid with
    the probability of its segment after a realistic delay (paid after the timeout counts as failed, as paymon
    judges it); an unpaid order is decided failed at the timeout."""
    created, success = [], []
    for lo, hi, p in segments:
        n = rng.poisson(rate * (hi - lo) / 60)
        c = np.sort(rng.uniform(lo, hi, n))
        d = pay_delay(rng, n)
        ok = (rng.random(n) < p) & (d <= TIMEOUT_S)
        created.append(c)
        success.append(np.where(ok, c + d, np.nan))
    c = np.concatenate(created)
    s = np.concatenate(success)
    return OrderTimes(c, s, np.where(np.isnan(s), c + TIMEOUT_S, np.nan))


def upto(orders: OrderTimes, t: float) -> OrderTimes:
    """What the shop's data holds at ``t``: orders created by then (their later outcomes are masked by time)."""
    i = int(np.searchsorted(orders.created, t, side="right"))
    return OrderTimes(orders.created[:i], orders.success[:i], orders.failed[:i])


@dataclass
class WallRun:
    """The three detectors on one simulated order stream, cycle by cycle (times in seconds from the change's day)."""

    orders: OrderTimes
    params: CusumParams
    early: EarlyParams
    delays: PayDelays
    plain_spec: RuleSpec
    decided_at: np.ndarray = field(init=False)
    decided_ok: np.ndarray = field(init=False)
    events: np.ndarray = field(init=False)
    ok_cum: np.ndarray = field(init=False)
    cusum: CusumState = field(default_factory=CusumState)
    early_state: CusumState = field(default_factory=CusumState)
    plain: AlertState = field(default_factory=lambda: AlertState("low_success", "c1"))

    def __post_init__(self) -> None:
        paid = ~np.isnan(self.orders.success)
        at = np.where(paid, self.orders.success, self.orders.failed)
        order = np.argsort(at, kind="stable")
        self.decided_at, self.decided_ok = at[order], paid[order]
        self.ok_cum = np.concatenate(([0], np.cumsum(self.decided_ok)))
        self.events = np.sort(np.concatenate([self.orders.created, self.orders.success[paid]]))

    def cycle(self, t: float) -> tuple[bool, bool, bool]:
        """Every detector at ``t`` on what is known then: (CUSUM alarmed, early alarmed, plain rule fired)."""
        now = datetime.fromtimestamp(t, UTC)
        lo, hi = np.searchsorted(self.decided_at, [t - CYCLE_S, t], side="right")
        self.cusum, a, _ = update(self.cusum, self.decided_ok[lo:hi].tolist(), self.params, now)
        k = int(np.searchsorted(self.events, t, side="right"))
        known = datetime.fromtimestamp(float(self.events[k - 1]) if k else t, UTC)
        self.early_state, b, _ = early_update(self.early_state, upto(self.orders, t), self.early, self.delays,
                                              now, known)
        w = int(np.searchsorted(self.decided_at, t - WINDOW_MIN * 60, side="right"))
        n = hi - w
        ratio = None if n < MIN_ORDERS else float(self.ok_cum[hi] - self.ok_cum[w]) / n
        self.plain, events = step(self.plain, self.plain_spec, ratio, now)
        return a, b, any(e.kind == "firing" for e in events)


def wall_setup(rng: np.random.Generator, rate: float, p0: float, after: list[tuple[float, float, float]]) -> WallRun:
    """History (up to 7 days, enough for the baseline's 20,000 outcomes), one hour in control, then ``after``."""
    history_s = min(7 * 86400.0, max(2 * 3600.0, 1.5 * 20_000 / rate * 60))
    t0 = T0.timestamp()
    orders = wall_orders(rng, rate, [(t0 - history_s, t0 + WARMUP_S, p0), *after])
    past = upto(orders, t0)
    ok = ~np.isnan(past.success)
    at = np.where(ok, past.success, past.failed)
    seen = at <= t0
    hours = np.floor((at[seen] - t0) / 3600).astype(int)
    tallies = [Tally(datetime.fromtimestamp(t0 + 3600 * int(h), UTC), int((ok[seen] & (hours == h)).sum()),
                     int((~ok[seen] & (hours == h)).sum())) for h in np.unique(hours)]
    base = estimate_baseline(tallies, T0)
    assert base is not None
    params = params_for(base, FA_PER_WEEK)
    delays = learn_pay_delays(past, TIMEOUT_S)
    plain = RuleSpec("low_success", "success_ratio", "<", round(p0 - 0.15, 2), recover=round(p0 - 0.05, 2))
    run = WallRun(orders, params, early_params(params), delays, plain)
    t = t0 - WARMUP_S  # start the detectors an hour before the end of history: their state is warm at t0
    while t < t0 + WARMUP_S:
        t += CYCLE_S
        run.cycle(t)
    return run


def wall_delays(rate: int, p0: float, q: float, seed: int) -> tuple[float, float, float]:
    """Minutes from the change to the alarm of (CUSUM on decided orders, early detector, plain rule); inf = never."""
    rng = np.random.default_rng([rate, seed, int(p0 * 100), int(q * 100), 7])
    change = T0.timestamp() + WARMUP_S
    run = wall_setup(rng, rate, p0, [(change, change + WALL_HORIZON_S, q)])
    found = [math.inf, math.inf, math.inf]
    t = change
    while t < change + WALL_HORIZON_S and any(math.isinf(x) for x in found):
        t += CYCLE_S
        for i, hit in enumerate(run.cycle(t)):
            if hit and math.isinf(found[i]):
                found[i] = (t - change) / 60
    return found[0], found[1], found[2]


def wall_false_alarms(rate: int, seed: int) -> tuple[int, int, int]:
    """Alarms of each detector in one simulated week at 95 % with no change (all false)."""
    rng = np.random.default_rng([rate, seed, 95, 95, 8])
    start = T0.timestamp() + WARMUP_S
    run = wall_setup(rng, rate, P0, [(start, start + WEEK_MIN * 60, P0)])
    counts = [0, 0, 0]
    t = start
    while t < start + WEEK_MIN * 60:
        t += CYCLE_S
        for i, hit in enumerate(run.cycle(t)):
            counts[i] += hit
    return counts[0], counts[1], counts[2]


def wall_clock(seeds: int, fa_weeks: int) -> dict[str, Any]:
    """The wall-clock table and its JSON keys."""
    rows = []
    medians: dict[str, dict[str, float | None]] = {}
    for rate in RATES:
        for p0, q in WALL_CASES:
            runs = [wall_delays(rate, p0, q, seed) for seed in range(seeds)]
            m = [median([r[i] for r in runs]) for i in range(3)]
            key = f"{rate}/min {p0:.2f}->{q:.2f}"
            medians[key] = {"cusum": finite(m[0]), "early": finite(m[1]), "plain_15m": finite(m[2])}
            rows.append((rate, p0, q, m))
    fa = {}
    for rate in RATES:
        weeks = [wall_false_alarms(rate, seed) for seed in range(fa_weeks)]
        fa[rate] = [sum(w[i] for w in weeks) / fa_weeks for i in range(3)]
    print(f"{'rate/min':>8} {'drop':>9} {'CUSUM min':>10} {'early min':>10} {'plain 15m min':>14}   "
          f"(median of {seeds} seeds, minutes from the drop to the alert)")
    for rate, p0, q, m in rows:
        print(f"{rate:>8} {p0:.2f}→{q:.2f} {fmt1(m[0]):>10} {fmt1(m[1]):>10} {fmt1(m[2]):>14}")
    print()
    print(f"{'rate/min':>8} {'CUSUM FA/week':>14} {'early FA/week':>14} {'plain FA/week':>14}   "
          f"(no change, {fa_weeks} simulated weeks each; target {FA_PER_WEEK:g})")
    for rate in RATES:
        print(f"{rate:>8} {fa[rate][0]:>14.2f} {fa[rate][1]:>14.2f} {fa[rate][2]:>14.2f}")
    return {"median_minutes_to_alert": medians,
            "false_alarms_per_week_wall_clock": {f"{r}/min": {"cusum": v[0], "early": v[1], "plain_15m": v[2]}
                                                 for r, v in fa.items()},
            "worst_false_alarms_per_week": max(v[1] for v in fa.values())}


def fmt1(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.1f}"


def median(xs: list[float]) -> float:
    return float(np.median(xs))


def fmt(x: float | None) -> str:
    return "never" if x is None or math.isinf(x) else f"{x:.0f}"


def fmt2(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}"


def finite(x: float) -> float | None:
    return None if math.isinf(x) else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--fa-weeks", type=int, default=8, help="simulated weeks per rate for the wall-clock false alarms")
    args = ap.parse_args()
    started = time.perf_counter()
    cases: list[dict[str, Any]] = []
    fa_rows = []
    for rate in RATES:
        runs = [one_seed(rate, seed) for seed in range(args.seeds)]
        cusum_fa = sum(r.cusum_fa for r in runs) / args.seeds
        plain_fa = sum(r.plain_fa for r in runs) / args.seeds
        fa_rows.append((rate, cusum_fa, plain_fa))
        arl0 = rate * WEEK_MIN / FA_PER_WEEK
        for k, q in enumerate(DROPS):
            res = [r.delays[k] for r in runs]
            c_orders = median([c[0] for c, _ in res])
            c_min = median([c[1] for c, _ in res])
            p_orders = median([p[0] for _, p in res])
            p_min = median([p[1] for _, p in res])
            p_detected = sum(not math.isinf(p[0]) for _, p in res) / len(res)
            c_detected = sum(not math.isinf(c[0]) for c, _ in res) / len(res)
            bound = delay_bound(P0, q, arl0)
            cases.append({
                "rate_per_min": rate, "p0": P0, "p1": q, "seeds": args.seeds,
                "bound_orders": round(bound, 2),
                "cusum_median_delay_orders": finite(c_orders),
                "cusum_median_delay_min": finite(c_min),
                "cusum_detected": c_detected,
                "ratio_to_bound": None if math.isinf(c_orders) else round(c_orders / bound, 3),
                "plain_median_delay_orders": finite(p_orders),
                "plain_median_delay_min": finite(p_min),
                "plain_detected": p_detected,
                "cusum_false_alarms_per_week": cusum_fa,
                "plain_false_alarms_per_week": plain_fa,
            })
    elapsed = time.perf_counter() - started
    print(f"{'rate/min':>8} {'drop':>9} {'bound':>7} {'CUSUM orders':>12} {'min':>6} {'ratio':>6} "
          f"{'plain orders':>12} {'min':>6} {'plain found':>11}")
    for c in cases:
        print(f"{c['rate_per_min']:>8} {P0:.2f}→{c['p1']:.2f} {c['bound_orders']:>7.1f} "
              f"{fmt(c['cusum_median_delay_orders']):>12} {fmt(c['cusum_median_delay_min']):>6} "
              f"{fmt2(c['ratio_to_bound']):>6} {fmt(c['plain_median_delay_orders']):>12} "
              f"{fmt(c['plain_median_delay_min']):>6} {c['plain_detected']:>11.0%}")
    print()
    print(f"{'rate/min':>8} {'CUSUM false alarms/week':>24} {'plain false alarms/week':>24}   (no change, "
          f"{args.seeds} simulated weeks each; target {FA_PER_WEEK:g})")
    for rate, cfa, pfa in fa_rows:
        print(f"{rate:>8} {cfa:>24.2f} {pfa:>24.2f}")
    worst = max(math.inf if c["ratio_to_bound"] is None else c["ratio_to_bound"] for c in cases)
    worst_fa = max(cfa for _, cfa, _ in fa_rows)
    print(f"worst CUSUM delay / bound: {worst:.2f} (target ≤ 2); worst CUSUM false alarms/week: {worst_fa:.2f} "
          f"(target ≤ {FA_PER_WEEK:g}); {elapsed:.0f} s")
    print()
    wall = wall_clock(args.seeds, args.fa_weeks)
    print(json.dumps({"median_delay_ratio_to_bound": finite(round(worst, 3)), "false_alarms_per_week": worst_fa,
                      "cases": cases, **wall}))


if __name__ == "__main__":
    main()
