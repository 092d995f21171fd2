"""A channel drained by a ``success_ratio`` rule gets no orders, so no order can resolve that rule: the daemon's
cycle (real SQLite store, JSONL source, YAML sink, fixed clock) judges it meanwhile on its probes, or with
``routing.explore`` on a trickle of real orders. It is restored once it heals, and never while it stays broken."""

from __future__ import annotations

from datetime import timedelta

from tests.test_pipeline import MONITOR, Rig

DRAINING = MONITOR.replace("actions: [notify, {reduce_weight: 0.5}]", "actions: [notify, drain]")
EXPLORING = DRAINING.replace("  sink: {kind: yaml, path: channels.yaml}\n",
                             "  sink: {kind: yaml, path: channels.yaml}\n  explore: {share: 0.1, min_orders: 5}\n")
FIRED = "🔴 FIRING [warning] main (main) · low_success: success_ratio = 30.0% (threshold 80.0%)"
DRAINED = "⚖️ weight main (main): 60 → 0 (rule low_success: drain)"


def drained_by_low_success(rig: Rig, monitor: str) -> None:
    """Ten orders on main, three paid: 30 %, firing after its ``for``, and main drained."""
    (rig.folder / "monitor.yaml").write_text(monitor, encoding="utf-8")
    rig.restart()
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    for i in range(10):
        rig.events({"event": "order_created", "order_id": f"O{i}", "channel": "main", "amount": "10.00"})
    rig.clock.advance(timedelta(minutes=4))
    for i in range(3):
        rig.events({"event": "callback_received", "order_id": f"O{i}", "channel": "main", "verified": True})
    rig.clock.advance(timedelta(minutes=12))
    assert rig.cycle() == []
    rig.clock.advance(timedelta(minutes=2))
    assert rig.cycle() == [FIRED, DRAINED]


def minutes(rig: Rig, n: int, *probes: str) -> list[str]:
    """``n`` minutes, each with a query probe of each outcome in ``probes`` and a cycle; the lines printed."""
    lines = []
    for _ in range(n):
        rig.clock.advance(timedelta(minutes=1))
        rig.probes("main", *probes)
        lines += rig.cycle()
    return lines


def test_drained_by_success_ratio_resolves_on_its_probes_and_is_restored(rig: Rig) -> None:
    drained_by_low_success(rig, DRAINING)
    assert minutes(rig, 1, "ok") == [
        "✅ RESOLVED [warning] main (main) · low_success: success_ratio = n/a (threshold 80.0%)"]
    assert minutes(rig, 25, "ok") == [
        "⚖️ weight main (main): 0 → 15 (restore step 1/3)",
        "⚖️ weight main (main): 15 → 30 (restore step 2/3)",
        "⚖️ weight main (main): 30 → 60 (restore step 3/3)",
    ]
    assert rig.weight("main") == 60


def test_a_channel_whose_probes_keep_failing_is_never_restored(rig: Rig) -> None:
    drained_by_low_success(rig, DRAINING)
    lines = minutes(rig, 120, "timeout")
    assert not any("RESOLVED" in line or "restore" in line for line in lines), lines
    assert rig.weight("main") == 0
    assert rig.app.store.alert_states()[("low_success", "main")].state == "firing"


def test_with_exploration_the_trickle_is_judged_on_its_own_orders(rig: Rig) -> None:
    drained_by_low_success(rig, EXPLORING)
    assert minutes(rig, 9, "ok") == []  # probes alone do not resolve it: the trickle's orders will
    assert minutes(rig, 3, "ok") == ["⚖️ weight main (main): 0 → 6 (explore: 0.1× baseline)"]
    for i in range(5):  # the trickle's orders, all paid
        rig.events({"event": "order_created", "order_id": f"T{i}", "channel": "main", "amount": "10.00"})
        rig.events({"event": "callback_received", "order_id": f"T{i}", "channel": "main", "verified": True})
    lines = minutes(rig, 14, "ok")
    assert lines == [] and rig.weight("main") == 6  # settled only once their pay timeout is over
    assert minutes(rig, 1, "ok") == [
        "✅ RESOLVED [warning] main (main) · low_success: success_ratio = 100.0% (threshold 80.0%)",
        "⚖️ weight main (main): 6 → 15 (restore step 1/3)"]
    assert minutes(rig, 10, "ok") == ["⚖️ weight main (main): 15 → 30 (restore step 2/3)",
                                      "⚖️ weight main (main): 30 → 60 (restore step 3/3)"]


def test_with_exploration_a_trickle_that_still_fails_keeps_the_channel_at_the_trickle(rig: Rig) -> None:
    drained_by_low_success(rig, EXPLORING)
    minutes(rig, 12, "ok")
    for i in range(5):  # the trickle's orders are never paid
        rig.events({"event": "order_created", "order_id": f"T{i}", "channel": "main", "amount": "10.00"})
    lines = minutes(rig, 60, "ok")
    assert not any("RESOLVED" in line or "restore" in line for line in lines), lines
    assert rig.weight("main") == 6


REDUCED = "⚖️ weight main (main): 60 → 30 (rule low_success: reduce to 0.5× baseline)"


def reduced_by_low_success(rig: Rig) -> None:
    """As :func:`drained_by_low_success` on the shipped ``reduce_weight: 0.5``: main at half weight, still taking
    orders."""
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    for i in range(10):
        rig.events({"event": "order_created", "order_id": f"O{i}", "channel": "main", "amount": "10.00"})
    rig.clock.advance(timedelta(minutes=4))
    for i in range(3):
        rig.events({"event": "callback_received", "order_id": f"O{i}", "channel": "main", "verified": True})
    rig.clock.advance(timedelta(minutes=12))
    assert rig.cycle() == []
    rig.clock.advance(timedelta(minutes=2))
    assert rig.cycle() == [FIRED, REDUCED]


def test_a_reduced_channel_is_not_restored_on_its_probes_while_no_order_has_judged_it(rig: Rig) -> None:
    # A degraded channel still answers its query probe: a probe says nothing of its buyers' success ratio.
    reduced_by_low_success(rig)
    lines = minutes(rig, 40, "ok")
    assert not any("RESOLVED" in line or "restore" in line for line in lines), lines
    assert rig.weight("main") == 30


def test_a_reduced_channel_still_failing_its_orders_stays_reduced(rig: Rig) -> None:
    reduced_by_low_success(rig)
    for i in range(6):  # orders at the reduced weight, none paid
        rig.events({"event": "order_created", "order_id": f"R{i}", "channel": "main", "amount": "10.00"})
    lines = minutes(rig, 60, "ok")
    assert not any("RESOLVED" in line or "restore" in line for line in lines), lines
    assert rig.weight("main") == 30


def test_a_reduced_channel_is_restored_once_the_orders_since_are_healthy(rig: Rig) -> None:
    reduced_by_low_success(rig)
    for i in range(6):  # orders at the reduced weight, all paid
        rig.events({"event": "order_created", "order_id": f"R{i}", "channel": "main", "amount": "10.00"})
        rig.events({"event": "callback_received", "order_id": f"R{i}", "channel": "main", "verified": True})
    assert minutes(rig, 14, "ok") == []  # settled only once their pay timeout is over
    assert minutes(rig, 1, "ok") == [
        "✅ RESOLVED [warning] main (main) · low_success: success_ratio = 100.0% (threshold 80.0%)"]
    assert minutes(rig, 10, "ok") == ["⚖️ weight main (main): 30 → 60 (restore step 3/3)"]
    assert rig.weight("main") == 60
