"""The alert lifecycle on a fixed clock: for, hysteresis, no-data, reminders; and its invariants (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.lifecycle import RuleSpec, step
from monitor.models import AlertState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOW = RuleSpec("low_success", "success_ratio", "<", 0.8, recover=0.9, for_=timedelta(minutes=2),
               repeat=timedelta(minutes=30), max_reminders=2)
DOWN = RuleSpec("channel_down", "probe_failures_in_a_row", ">=", 3, severity="critical")


def run(spec: RuleSpec, values: list[float | None], every: float = 60) -> list[tuple[str, list[str]]]:
    """Feed values one per ``every`` seconds; return (state, [event kinds]) after each."""
    state = AlertState(spec.name, "c1")
    out = []
    for i, v in enumerate(values):
        state, events = step(state, spec, v, T0 + timedelta(seconds=every * i))
        out.append((state.state, [e.kind for e in events]))
    return out


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        # fires at once without `for`
        (DOWN, [0, 3], [("inactive", []), ("firing", ["firing"])]),
        # resolves when the streak ends (no recover: the threshold is the line)
        (DOWN, [3, 4, 0], [("firing", ["firing"]), ("firing", []), ("inactive", ["resolved"])]),
        # `for: 2m`: pending for two minutes first
        (LOW, [0.5, 0.5, 0.5], [("pending", []), ("pending", []), ("firing", ["firing"])]),
        # pending that recovers never fires
        (LOW, [0.5, 0.85, 0.5], [("pending", []), ("inactive", []), ("pending", [])]),
        # hysteresis: 0.85 is above the threshold but below recover, so it stays firing
        (LOW, [0.5, 0.5, 0.5, 0.85, 0.89, 0.9],
         [("pending", []), ("pending", []), ("firing", ["firing"]), ("firing", []), ("firing", []),
          ("inactive", ["resolved"])]),
        # no data: pending falls back, firing holds (silence is not recovery)
        (LOW, [0.5, None], [("pending", []), ("inactive", [])]),
        (DOWN, [3, None, None, 0], [("firing", ["firing"]), ("firing", []), ("firing", []),
                                     ("inactive", ["resolved"])]),
    ],
)
def test_lifecycle_table(spec: RuleSpec, values: list[float | None], expected: list[tuple[str, list[str]]]) -> None:
    assert run(spec, values) == expected


def test_reminders_every_repeat_up_to_the_cap() -> None:
    # firing at minute 2, then reminders at 32 and 62, and none at 92 (cap 2)
    trace = run(LOW, [0.5] * 100)
    kinds = [(i, k) for i, (_, ks) in enumerate(trace) for k in ks]
    assert kinds == [(2, "firing"), (32, "reminder"), (62, "reminder")]


def test_event_carries_value_threshold_and_actions() -> None:
    spec = RuleSpec("r", "success_ratio", "<", 0.8, actions=("notify", "drain"))
    state, [event] = step(AlertState("r", "c9"), spec, 0.41, T0)
    assert (event.kind, event.channel, event.value, event.threshold, event.actions) == (
        "firing", "c9", 0.41, 0.8, ("notify", "drain"))
    assert state.fired_at == T0 and event.key.startswith("r|c9|firing|")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=60),
       st.sampled_from([0, 60, 180]), st.sampled_from([None, 0.9]))
def test_firing_and_resolved_alternate(values: list[float | None], for_s: int, recover: float | None) -> None:
    spec = RuleSpec("r", "success_ratio", "<", 0.8, recover=recover, for_=timedelta(seconds=for_s),
                    repeat=timedelta(minutes=5))
    kinds = [k for _, ks in run(spec, values) for k in ks if k != "reminder"]
    for a, b in zip(kinds, kinds[1:], strict=False):
        assert a != b, kinds
    if kinds:
        assert kinds[0] == "firing"
