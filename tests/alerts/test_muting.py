"""Silences, inhibition and rules without notify: what operators receive stays consistent (pure, fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.lifecycle import RuleSpec, step
from monitor.alerts.muting import inhibited_by, route
from monitor.models import AlertState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DOWN = RuleSpec("channel_down", "probe_failures_in_a_row", ">=", 3, severity="critical")
LOW = RuleSpec("low_success", "success_ratio", "<", 0.8, repeat=timedelta(minutes=2))
SPECS = {"channel_down": DOWN, "low_success": LOW}
INHIBITS = {"channel_down": ["low_success"]}


def play(rows: list[tuple[float | None, float | None, bool]], announce: set[str] | None = None) -> list[str]:
    """Each row: (down value, low value, silenced?) for channel c1, one minute apart; returns what was sent."""
    states: dict[tuple[str, str], AlertState] = {}
    sent: list[str] = []
    for i, (down, low, silenced) in enumerate(rows):
        now = T0 + timedelta(minutes=i)
        prev = dict(states)
        events = []
        evaluated = dict(states)
        for spec, value in ((DOWN, down), (LOW, low)):
            key = (spec.name, "c1")
            after, evs = step(prev.get(key) or AlertState(spec.name, "c1"), spec, value, now)
            evaluated[key] = after
            events += evs
        inhibited = inhibited_by(INHIBITS, evaluated)
        routed = route(events, prev, evaluated, announce=announce if announce is not None else set(SPECS),
                       specs=SPECS, now=now,
                       muted=lambda rule, ch, s=silenced, inh=inhibited: s or (rule, ch) in inh)
        states = routed.states
        sent += [f"{i}:{e.rule}:{e.kind}" for e in routed.loud]
    return sent


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # channel_down inhibits low_success: only the cause is paged; the effect is announced once the cause
        # resolves while it still fires, and its resolution follows.
        ([(3, 0.5, False), (3, 0.5, False), (0, 0.5, False), (0, 0.9, False)],
         ["0:channel_down:firing", "2:channel_down:resolved", "2:low_success:firing", "3:low_success:resolved"]),
        # inhibited from start to end: never announced, so no resolved either
        ([(3, 0.5, False), (3, 0.9, False), (0, 0.9, False)],
         ["0:channel_down:firing", "2:channel_down:resolved"]),
        # silenced while it starts firing, announced when the silence ends, then resolved
        ([(0, 0.5, True), (0, 0.5, True), (0, 0.5, False), (0, 0.9, False)],
         ["2:low_success:firing", "3:low_success:resolved"]),
        # fires and resolves inside a silence: nothing at all
        ([(0, 0.5, True), (0, 0.9, True), (0, 0.9, False)], []),
        # announced first, then silenced: the resolution is still sent (the operator was told it fired)
        ([(0, 0.5, False), (0, 0.5, True), (0, 0.9, True)], ["0:low_success:firing", "2:low_success:resolved"]),
    ],
)
def test_what_operators_receive(rows: list[tuple[float | None, float | None, bool]], expected: list[str]) -> None:
    assert play(rows) == expected


def test_reminders_are_not_sent_for_unannounced_alerts() -> None:
    # low_success fires at 0 while silenced; reminders would be due at 2 and 4; silence lifts at 5
    rows = [(0, 0.5, True)] * 5 + [(0, 0.5, False)] * 3
    assert play(rows) == ["5:low_success:firing", "7:low_success:reminder"]


def test_rules_without_notify_only_record() -> None:
    assert play([(3, 0.5, False), (0, 0.9, False)], announce={"channel_down"}) == [
        "0:channel_down:firing", "1:channel_down:resolved"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, 0, 3]), st.one_of(st.none(), st.floats(0, 1)), st.booleans()),
                max_size=40))
def test_sent_firing_and_resolved_alternate_whatever_is_muted(
        rows: list[tuple[float | None, float | None, bool]]) -> None:
    for rule in SPECS:
        kinds = [s.split(":")[2] for s in play(rows) if s.split(":")[1] == rule and not s.endswith("reminder")]
        for a, b in zip(kinds, kinds[1:], strict=False):
            assert a != b, kinds
        assert not kinds or kinds[0] == "firing"
