"""The early drop detector's core (``monitor.alerts.early``): its evidence is a proper likelihood ratio, equal to the
CUSUM's once an order is decided; the Page recursion's closed form; time-to-pay learning; and on simulated orders
it alarms on a drop long before the pay timeout, while a channel at its baseline does not alarm."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitor.alerts.detectors import CusumParams, CusumState
from monitor.alerts.early import (
    H_MARGIN,
    PRIOR_DELAYS_S,
    OrderTimes,
    _page,
    early_params,
    early_update,
    learn_pay_delays,
    order_llr,
    order_times,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)
TIMEOUT = 900.0
PARAMS = CusumParams(p0=0.95, p1=0.70, h=9.0, arl0=100_000.0)


def orders(rng: np.random.Generator, start: float, minutes: float, rate: float, p: float) -> OrderTimes:
    n = rng.poisson(rate * minutes)
    created = np.sort(rng.uniform(start, start + minutes * 60, n))
    delay = np.where(rng.random(n) < 0.15, rng.uniform(120, 600, n), rng.uniform(30, 120, n))
    paid = rng.random(n) < p
    success = np.where(paid, created + delay, np.nan)
    return OrderTimes(created, success, np.where(paid, np.nan, created + TIMEOUT))


def join(*parts: OrderTimes) -> OrderTimes:
    return OrderTimes(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("created", "success", "failed")))


def test_the_evidence_of_a_pending_order_is_a_likelihood_ratio_that_becomes_the_cusums_once_decided() -> None:
    delays = learn_pay_delays(OrderTimes.empty(), TIMEOUT)
    known = T0.timestamp() + 10_000
    created = np.array([known, known - 60, known - 300, known - 2 * TIMEOUT, known - 2 * TIMEOUT])
    success = np.array([np.nan, np.nan, np.nan, np.nan, known - 2 * TIMEOUT + 50])
    failed = np.array([np.nan, np.nan, np.nan, known - TIMEOUT, np.nan])
    llr = order_llr(OrderTimes(created, success, failed), known, PARAMS, delays)
    assert llr[0] == 0.0  # just created: no evidence
    assert 0 < llr[1] < llr[2] < llr[3]  # unpaid and older: more evidence of a drop
    assert llr[3] == pytest.approx(PARAMS.llr_failure)
    assert llr[4] == pytest.approx(PARAMS.llr_success)
    for age in (0.0, 45.0, 90.0, 200.0, 599.0):
        f = float(delays.cdf(np.array([age]))[0])
        p0, p1 = PARAMS.p0, PARAMS.p1
        # E_p0[LR] = 1 at every age: paid by then with probability p0·F, else unpaid.
        assert p0 * f * (p1 / p0) + (1 - p0 * f) * (1 - p1 * f) / (1 - p0 * f) == pytest.approx(1.0)


def test_page_closed_form_is_the_recursion() -> None:
    rng = np.random.default_rng(1)
    for s0 in (0.0, 2.5):
        x = rng.normal(-0.1, 1.0, 300)
        path, last = _page(s0, x)
        s, expect = s0, []
        for v in x:
            s = max(0.0, s + v)
            expect.append(s)
        assert np.allclose(path, expect) and last == pytest.approx(expect[-1])
    assert _page(1.5, np.empty(0))[1] == 1.5


def test_time_to_pay_is_learned_from_paid_orders_outside_firing_periods() -> None:
    rng = np.random.default_rng(2)
    history = orders(rng, T0.timestamp(), 600, 5, 0.95)
    delays = learn_pay_delays(history, TIMEOUT)
    assert delays.learned == int((~np.isnan(history.success)).sum())
    assert delays.cdf(np.array([29.0]))[0] < 0.05 < 0.8 < delays.cdf(np.array([150.0]))[0]
    assert delays.cdf(np.array([TIMEOUT]))[0] == 1.0
    firing = [(T0 + timedelta(hours=2), T0 + timedelta(hours=4)), (T0 + timedelta(hours=9), None)]
    fewer = learn_pay_delays(history, TIMEOUT, firing)
    assert fewer.learned < delays.learned
    quiet = learn_pay_delays(OrderTimes.empty(), TIMEOUT)
    assert quiet.learned == 0 and len(quiet.sample) == len(PRIOR_DELAYS_S)


def run(stream: OrderTimes, start: float, end: float) -> tuple[CusumState, float | None]:
    """Cycles every 10 s from ``start`` to ``end`` on what is known at each; when it first alarmed (or None)."""
    delays = learn_pay_delays(stream, TIMEOUT)
    params = early_params(PARAMS)
    assert params.h == PARAMS.h + H_MARGIN
    state, t = CusumState(), start
    while t < end:
        t += 10
        i = int(np.searchsorted(stream.created, t, side="right"))
        seen = OrderTimes(stream.created[:i], stream.success[:i], stream.failed[:i])
        now = datetime.fromtimestamp(t, UTC)
        state, alarmed, value = early_update(state, seen, params, delays, now, now)
        if alarmed:
            assert value >= params.h
            return state, t
    return state, None


def test_a_drop_is_alarmed_long_before_the_pay_timeout_and_a_steady_channel_is_not() -> None:
    rng = np.random.default_rng(3)
    t0 = T0.timestamp()
    steady = orders(rng, t0, 600, 10, 0.95)
    dropped = join(steady, orders(rng, t0 + 600 * 60, 60, 10, 0.30))
    state, at = run(dropped, t0 + 590 * 60, t0 + 660 * 60)
    assert at is not None
    assert at - (t0 + 600 * 60) < TIMEOUT / 2, f"alarmed {(at - t0) / 60 - 600:.1f} minutes after the drop"
    assert state.s == 0.0 and state.alarms == 1 and state.through is not None
    state, at = run(steady, t0 + 60 * 60, t0 + 600 * 60)
    assert at is None and state.count > 4_000 and state.alarms == 0
    assert CusumState.from_dict(state.to_dict()) == state


def test_order_times_sorts_by_creation() -> None:
    o = order_times({"created": np.array([3.0, 1.0]), "success": np.array([4.0, np.nan]),
                     "failed": np.array([np.nan, 901.0])})
    assert list(o.created) == [1.0, 3.0] and math.isnan(o.success[0]) and o.failed[0] == 901.0
    assert len(o.after(1.0)) == 1


def test_the_early_detector_is_refused_on_probe_outcomes() -> None:
    from monitor.config.rules import Rule

    ok = Rule.model_validate({"name": "low_success", "signal": "success_ratio", "detector": "early"})
    assert ok.detector == "early"
    with pytest.raises(ValueError, match="watches 'success_ratio' only"):
        Rule.model_validate({"name": "probe_drop", "signal": "probe_success_ratio", "detector": "early"})
