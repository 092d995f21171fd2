"""Recovery of drained channels in the pure policy, on a fixed clock: the exploration trickle, what holds it back
(failing probes, a rule that does not judge orders), the steps after it; and the policy's own dependencies."""

from __future__ import annotations

import ast
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import monitor.routing.policy as policy
from monitor.models import RoutingRow
from monitor.routing.policy import ChannelRouting, Decision, RestorePolicy, Wish, decide, next_restore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EXPLORE = RestorePolicy((0.25, 0.5, 1.0), every=timedelta(minutes=5), healthy_for=timedelta(minutes=10),
                        explore=0.02)
BACKUP = ChannelRouting("backup", 40, ("alipay",))
LOW_SUCCESS = Wish("main", "low_success", 0.5, by_orders=True)
DRAINED = {"main": RoutingRow("main", 200, 0, 0, 0, "rule channel_down: drain", T0)}


def main(weight: int, *, probes_ok: bool = True) -> ChannelRouting:
    return ChannelRouting("main", weight, ("alipay",), probes_ok)


def run(rows: dict[str, RoutingRow], minutes: range, wishes: list[Wish], *, probes_ok: bool = True,
        restore: RestorePolicy = EXPLORE) -> tuple[dict[str, RoutingRow], list[tuple[int, int, str]]]:
    """One decision a minute (each written and applied), the changes as (minute, new weight, reason)."""
    changes = []
    for minute in minutes:
        weight = rows["main"].target
        d: Decision = decide([main(weight, probes_ok=probes_ok), BACKUP], rows, wishes,
                             now=T0 + timedelta(minutes=minute), restore=restore)
        rows = {k: replace(v, applied=v.target) for k, v in d.rows.items()}
        changes += [(minute, c.new, c.reason) for c in d.changes if c.channel == "main"]
    return rows, changes


def test_policy_depends_on_the_standard_library_and_monitor_models_only() -> None:
    tree = ast.parse(Path(policy.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    outside = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names and m != "__future__"}
    assert outside == {"monitor.models"}


def test_drained_by_a_ratio_rule_with_passing_probes_gets_the_trickle_and_keeps_it_while_it_fires() -> None:
    rows, changes = run(DRAINED, range(1, 40), [LOW_SUCCESS])
    assert changes == [(11, 4, "explore: 0.02× baseline")]  # healthy_for after the first passing look (minute 1)
    assert rows["main"].target == 4  # never further while the rule still fires: its verdict needs the trickle


def test_after_the_trickle_the_restore_goes_on_in_steps_every_apart() -> None:
    rows, _ = run(DRAINED, range(1, 12), [LOW_SUCCESS])
    assert next_restore(rows["main"], EXPLORE) == T0 + timedelta(minutes=16)
    rows, changes = run(rows, range(12, 40), [])  # the rule resolved on the trickle's orders
    assert changes == [(16, 50, "restore step 1/3"), (21, 100, "restore step 2/3"), (26, 200, "restore step 3/3")]


def test_without_any_alert_exploration_is_the_first_restore_step() -> None:
    _, changes = run(DRAINED, range(1, 40), [])
    assert [(m, w) for m, w, _ in changes] == [(11, 4), (16, 50), (21, 100), (26, 200)]


def test_failing_probes_get_no_trickle() -> None:
    rows, changes = run(DRAINED, range(1, 120), [LOW_SUCCESS], probes_ok=False)
    assert changes == [] and rows["main"].target == 0


def test_a_rule_that_does_not_judge_orders_holds_the_channel_down_whatever_the_probes() -> None:
    rows, changes = run(DRAINED, range(1, 120), [LOW_SUCCESS, Wish("main", "channel_down", 0.0)])
    assert changes == [] and rows["main"].target == 0


def test_a_reduced_channel_keeps_its_reduced_weight_its_orders_still_judge_it() -> None:
    reduced = {"main": RoutingRow("main", 200, 100, 100, 0, "rule low_success: reduce to 0.5× baseline", T0)}
    rows, changes = run(reduced, range(1, 60), [LOW_SUCCESS])
    assert changes == [] and rows["main"].target == 100


def test_without_exploration_a_firing_ratio_rule_holds_the_channel_where_it_is() -> None:
    plain = replace(EXPLORE, explore=None)
    rows, changes = run(DRAINED, range(1, 60), [LOW_SUCCESS], restore=plain)
    assert changes == [] and rows["main"].target == 0  # the alert itself resolves on the probes (evaluation)


def test_the_trickle_respects_an_operator_hold() -> None:
    held = {"main": replace(DRAINED["main"], baseline=0, operator_hold=True)}
    rows, changes = run(held, range(1, 30), [LOW_SUCCESS])
    assert changes == [] and rows["main"].target == 0


def test_a_trickle_that_loses_its_probes_is_drained_by_the_rule_that_sees_it() -> None:
    rows, _ = run(DRAINED, range(1, 12), [LOW_SUCCESS])
    assert rows["main"].target == 4
    rows, changes = run(rows, range(12, 14), [LOW_SUCCESS, Wish("main", "channel_down", 0.0)], probes_ok=False)
    assert changes == [(12, 0, "rule channel_down: drain")]
