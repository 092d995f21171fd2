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

Delays in minutes run from the change to the end of the minute in which the alarm was raised. The bound is
``log(ARL0) / KL(p1‖p0)`` orders with the true p0, p1 and ARL0 = orders per week / 1. A drop not detected within
12 h counts as an infinite delay (a median of "never" when more than half the seeds miss it).

    .venv/bin/python bench/detection.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
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
    print(json.dumps({"median_delay_ratio_to_bound": finite(round(worst, 3)), "false_alarms_per_week": worst_fa,
                      "cases": cases}))


if __name__ == "__main__":
    main()
