"""The CUSUM drop detector: KL and bound values, threshold vs simulated false alarms, detection, baseline, state."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.detectors import (
    WEEK_S,
    Baseline,
    CusumConfig,
    CusumParams,
    CusumState,
    Tally,
    arl0_siegmund,
    bernoulli_kl,
    delay_bound,
    design_p1,
    estimate_baseline,
    params_for,
    threshold_for_arl0,
    update,
)
from monitor.models import ProbeResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def tuned(p0: float = 0.95, arl0: float = 10_080.0) -> CusumParams:
    p1 = design_p1(p0)
    return CusumParams(p0, p1, threshold_for_arl0(arl0, p0, p1), arl0)


def stream(seed: int, p: float, n: int) -> list[bool]:
    out: list[bool] = (np.random.default_rng(seed).random(n) < p).tolist()
    return out


def history(n: int, p: float, every: timedelta = timedelta(minutes=1), end: datetime = T0) -> list[Tally]:
    """``n`` outcomes, one per ``every``, the newest at ``end``; exactly round(n·p) successes, evenly spread."""
    return [Tally.one(end - every * i, math.floor((i + 1) * p) > math.floor(i * p)) for i in range(n)]


# --- KL, the bound, the threshold ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("q", "p", "expected"),
    [
        (0.95, 0.95, 0.0),
        (0.0, 0.95, math.log(20)),                                 # -log(1 - p)
        (1.0, 0.8, -math.log(0.8)),                                # -log(p)
        (0.5, 0.95, 0.5 * math.log(0.5 / 0.95) + 0.5 * math.log(10)),
        (0.8, 0.95, 0.8 * math.log(0.8 / 0.95) + 0.2 * math.log(4)),
    ],
)
def test_bernoulli_kl(q: float, p: float, expected: float) -> None:
    assert bernoulli_kl(q, p) == pytest.approx(expected, abs=1e-12)


def test_kl_known_values_and_domain() -> None:
    assert bernoulli_kl(0.5, 0.95) == pytest.approx(0.83037, abs=1e-5)
    assert bernoulli_kl(0.8, 0.95) == pytest.approx(0.13978, abs=1e-5)
    with pytest.raises(ValueError):
        bernoulli_kl(0.5, 1.0)


def test_delay_bound() -> None:
    # an outage of a 95 % channel: KL(0‖0.95) = log 20, so ARL0 = 20^3 gives exactly 3 orders
    assert delay_bound(0.95, 0.0, 20.0**3) == pytest.approx(3.0)
    # 1 order/min, 1 false alarm/week: ARL0 = 10080
    assert delay_bound(0.95, 0.5, 10_080) == pytest.approx(math.log(10_080) / 0.830366, rel=1e-5)
    assert delay_bound(0.95, 0.8, 10_080) == pytest.approx(65.95, abs=0.01)


def test_design_p1() -> None:
    assert design_p1(0.95) == pytest.approx(0.70)
    assert design_p1(0.4) == pytest.approx(0.2)       # never below p0 / 2
    assert design_p1(0.95, drop=0.1) == pytest.approx(0.85)


@pytest.mark.parametrize("arl0", [10.0, 500.0, 10_080.0, 1_008_000.0])
def test_threshold_inverts_siegmund(arl0: float) -> None:
    h = threshold_for_arl0(arl0, 0.95, 0.70)
    assert h > 0
    assert arl0_siegmund(h, 0.95, 0.70) == pytest.approx(arl0, rel=1e-9)


def test_threshold_below_log_arl0() -> None:
    # Siegmund's h is log(ARL0 · KL(p0‖p1)) to first order: ~1.6 nats below Lorden's log(ARL0) for 95 → 70
    h = threshold_for_arl0(10_080, 0.95, 0.70)
    assert h == pytest.approx(math.log(10_080 * bernoulli_kl(0.95, 0.70)), abs=0.01)
    assert math.log(10_080) - h == pytest.approx(1.6, abs=0.05)


# --- false alarms and detection by simulation ----------------------------------------------------------------

def test_false_alarm_rate_in_control_within_target() -> None:
    """200k in-control outcomes at ARL0 = 2000: the target is 100 alarms; the approximation is conservative."""
    params = tuned(arl0=2000)
    state, fired, _ = update(CusumState(), stream(7, 0.95, 200_000), params, T0)
    target = 200_000 / 2000
    assert 0.25 * target <= state.alarms <= target, state.alarms
    assert fired == (state.alarms > 0)


def test_false_alarms_rise_when_the_budget_does() -> None:
    outcomes = stream(8, 0.95, 200_000)
    tight = update(CusumState(), outcomes, tuned(arl0=20_000), T0)[0].alarms
    loose = update(CusumState(), outcomes, tuned(arl0=1_000), T0)[0].alarms
    assert tight < loose
    assert tight <= 10


def test_detects_95_to_50_within_a_few_dozen_orders() -> None:
    params = tuned(arl0=10_080)                        # 1 order/min, 1 false alarm/week
    delays = []
    for seed in range(30):
        state = CusumState()
        for i, ok in enumerate(stream(100 + seed, 0.5, 200)):
            state, fired, stat = update(state, [ok], params, T0)
            if fired:
                assert stat >= params.h
                delays.append(i + 1)
                break
    assert len(delays) == 30
    assert float(np.median(delays)) <= 2 * delay_bound(0.95, 0.5, 10_080)   # the ~11-order bound
    assert max(delays) <= 40


def test_outage_alarms_after_h_over_failure_llr_orders() -> None:
    params = tuned()
    need = math.ceil(params.h / params.llr_failure)
    state = CusumState()
    for i in range(1, need + 1):
        state, fired, _ = update(state, [False], params, T0)
        assert fired == (i == need)
    assert state.s == 0.0 and state.alarms == 1       # reset after the alarm


# --- the baseline ----------------------------------------------------------------------------------------------

def test_baseline_rate_and_volume() -> None:
    base = estimate_baseline(history(2000, 0.95), T0)
    assert base is not None
    assert base.successes == 1900 and base.failures == 100
    assert base.p0 == pytest.approx((1900 + 9) / (2000 + 10))
    assert base.per_week == pytest.approx(2000 / 1999 * 10_080, rel=1e-6)   # one per minute


def test_baseline_excludes_firing_periods() -> None:
    good = history(1000, 0.95, end=T0 - timedelta(hours=3))
    outage = [Tally.one(T0 - timedelta(hours=3) + timedelta(minutes=i + 1), False) for i in range(120)]
    ongoing = [Tally.one(T0 - timedelta(minutes=30) + timedelta(minutes=i), False) for i in range(30)]
    half = timedelta(seconds=30)
    firing = [(T0 - timedelta(hours=3) + half, T0 - timedelta(hours=1) + half), (T0 - timedelta(minutes=30), None)]
    with_outage = estimate_baseline(good + outage + ongoing, T0)
    base = estimate_baseline(good + outage + ongoing, T0, firing)
    assert with_outage is not None and base is not None
    assert base.outcomes == 1000 and base.failures == 50
    assert with_outage.p0 < 0.85 < base.p0
    # the span leaves out the 2.5 h of firing: 999 min of good history + 1 h quiet after the outage
    assert base.span_s == pytest.approx((999 + 180 - 150) * 60)


def test_baseline_none_without_enough_history() -> None:
    assert estimate_baseline([], T0) is None
    assert estimate_baseline(history(99, 0.95), T0) is None                      # < min_outcomes
    burst = history(500, 0.95, every=timedelta(seconds=1))                       # 500 in 8 min: < min_span
    assert estimate_baseline(burst, T0) is None
    assert estimate_baseline(burst, T0, config=CusumConfig(min_span=timedelta(minutes=5))) is not None
    old = history(500, 0.95, end=T0 - timedelta(days=8))                         # outside the lookback
    assert estimate_baseline(old, T0) is None


def test_quiet_perfect_channel_gets_p0_below_one() -> None:
    perfect = [Tally.one(T0 - timedelta(hours=i), True) for i in range(150)]
    base = estimate_baseline(perfect, T0)
    assert base is not None
    assert base.p0 == pytest.approx(159 / 160)
    assert base.p0 < 1
    params = params_for(base, 1.0)
    assert math.isfinite(params.llr_failure) and params.h > 0


def test_baseline_keeps_the_newest_up_to_max_outcomes() -> None:
    old_bad = history(5000, 0.5, end=T0 - timedelta(days=1))
    new_good = history(1000, 1.0)
    base = estimate_baseline(old_bad + new_good, T0, config=CusumConfig(max_outcomes=1000))
    assert base is not None
    assert base.outcomes == 1000 and base.failures == 0


def test_params_from_volume_and_budget() -> None:
    base = Baseline(p0=0.95, successes=9500, failures=500, span_s=WEEK_S)
    one = params_for(base, 1.0)
    assert one.arl0 == pytest.approx(10_000)
    assert one.p1 == pytest.approx(0.70)
    assert one.h == pytest.approx(threshold_for_arl0(10_000, 0.95, 0.70))
    assert params_for(base, 7.0).h < one.h < params_for(base, 0.1).h
    with pytest.raises(ValueError):
        params_for(base, 0.0)


def test_probe_outcomes_feed_the_same_detector() -> None:
    """Probes every 30 s for two days at 98 % ok, then a gateway outage: an alarm within a few probes."""
    probes = [ProbeResult("c1", "query", "ok" if i % 50 else "timeout", 0.1, T0 - timedelta(seconds=30 * i))
              for i in range(1, 5761)]
    base = estimate_baseline([Tally.one(r.started_at, r.ok) for r in probes], T0)
    assert base is not None
    assert base.per_week == pytest.approx(20_160, rel=0.01)
    params = params_for(base, 1.0)
    state, fired, stat = update(CusumState(), [r.ok for r in probes[::-1]], params, T0)
    assert not fired
    down = [ProbeResult("c1", "query", "connect_error", 0.0, T0 + timedelta(seconds=30 * i)) for i in range(4)]
    state, fired, stat = update(state, [r.ok for r in down], params, T0 + timedelta(minutes=2))
    assert fired and stat >= params.h


# --- state -----------------------------------------------------------------------------------------------------

def test_state_round_trip() -> None:
    state, _, _ = update(CusumState(), [True, False, False, True, False], tuned(), T0)
    assert state.s > 0 and state.count == 5 and state.updated_at == T0.timestamp()
    assert CusumState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert CusumState.from_dict({}) == CusumState()


def test_empty_batch_keeps_the_statistic() -> None:
    state, _, _ = update(CusumState(), [False, False], tuned(), T0)
    later, fired, stat = update(state, [], tuned(), T0 + timedelta(minutes=1))
    assert not fired and stat == state.s == later.s and later.count == 2


# --- properties ------------------------------------------------------------------------------------------------

P0S = st.floats(min_value=0.3, max_value=0.999)
ARL0S = st.floats(min_value=10, max_value=1e7)


@given(P0S, ARL0S, st.lists(st.booleans(), max_size=300))
@settings(max_examples=200, deadline=None)
def test_statistic_never_negative_and_below_h(p0: float, arl0: float, outcomes: list[bool]) -> None:
    params = tuned(p0, arl0)
    state = CusumState()
    for ok in outcomes:
        state, fired, stat = update(state, [ok], params, T0)
        assert 0.0 <= state.s < params.h
        assert stat >= 0.0 and (stat >= params.h) == fired


@given(P0S, ARL0S, st.integers(min_value=0, max_value=5000), st.floats(min_value=0, max_value=1e6))
@settings(max_examples=100, deadline=None)
def test_all_successes_never_alarm(p0: float, arl0: float, n: int, s0: float) -> None:
    params = tuned(p0, arl0)
    state, fired, stat = update(CusumState(s=min(s0, params.h / 2)), [True] * n, params, T0)
    assert not fired and state.alarms == 0
    assert stat <= params.h / 2


@given(P0S, ARL0S, st.lists(st.booleans(), max_size=200), st.integers(min_value=0, max_value=200))
@settings(max_examples=100, deadline=None)
def test_batching_does_not_change_the_result(p0: float, arl0: float, outcomes: list[bool], cut: int) -> None:
    params = tuned(p0, arl0)
    whole, _, _ = update(CusumState(), outcomes, params, T0)
    half, _, _ = update(CusumState(), outcomes[:cut], params, T0)
    split, _, _ = update(half, outcomes[cut:], params, T0)
    assert split.alarms == whole.alarms and split.count == whole.count
    assert split.s == pytest.approx(whole.s, abs=1e-9)
