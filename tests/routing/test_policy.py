"""Routing policy: drain, reduce, guards, operator edits and the step-by-step restore, on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.models import RoutingRow
from monitor.routing.policy import ChannelRouting, RestorePolicy, Wish, decide

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESTORE = RestorePolicy((0.25, 0.5, 1.0), every=timedelta(minutes=5), healthy_for=timedelta(minutes=10))
MAIN = ChannelRouting("main", 60, ("alipay", "wxpay"))
BACKUP = ChannelRouting("backup", 40, ("alipay", "wxpay"))


def test_drain_then_restore_in_steps() -> None:
    d = decide([MAIN, BACKUP], {}, [Wish("main", "channel_down", 0.0)], now=T0, restore=RESTORE)
    assert [(c.channel, c.old, c.new, c.rule) for c in d.changes] == [("main", 60, 0, "channel_down")]
    rows = d.rows
    targets = []
    now = T0
    for minute in range(1, 30):
        now = T0 + timedelta(minutes=minute)
        files = [ChannelRouting("main", rows["main"].target, MAIN.methods), BACKUP]
        rows = {k: (v if v.applied == v.target else RoutingRow(v.channel, v.baseline, v.target, v.target, v.step,
                                                                  v.reason, v.changed_at, v.healthy_since))
                for k, v in rows.items()}
        d = decide(files, rows, [], now=now, restore=RESTORE)
        rows = d.rows
        targets += [(minute, c.new) for c in d.changes]
    assert targets == [(11, 15), (16, 30), (21, 60)]
    assert rows["main"].target == rows["main"].baseline == 60


def test_reduce_takes_the_lowest_wish() -> None:
    d = decide([MAIN, BACKUP], {}, [Wish("main", "a", 0.5), Wish("main", "b", 0.25)], now=T0, restore=RESTORE)
    assert [(c.new, c.rule) for c in d.changes] == [(15, "b")]


def test_never_leaves_a_method_without_an_active_channel() -> None:
    d = decide([MAIN, BACKUP], {}, [Wish("main", "r", 0.0), Wish("backup", "r", 0.0)], now=T0, restore=RESTORE)
    assert [c.channel for c in d.changes] == ["main"]
    assert d.rows["backup"].target == 40
    assert d.held == ["backup: not drained, it is the last active channel for alipay, wxpay"]


def test_change_budget_per_hour() -> None:
    d = decide([MAIN, BACKUP], {}, [Wish("main", "r", 0.5)], now=T0, restore=RESTORE,
               max_changes_per_hour=6, changes_last_hour=6)
    assert d.changes == [] and "max_changes_per_hour" in d.held[0]


def test_operator_edit_becomes_the_baseline() -> None:
    rows = {"main": RoutingRow("main", 60, 0, 0, 0, "drain", T0)}
    edited = ChannelRouting("main", 25, MAIN.methods)
    d = decide([edited, BACKUP], rows, [], now=T0 + timedelta(minutes=1), restore=RESTORE)
    assert [(c.actor, c.old, c.new) for c in d.changes] == [("operator", 0, 25)]
    assert (d.rows["main"].baseline, d.rows["main"].target) == (25, 25)


def test_relapse_during_restore_lowers_again_and_resets_the_clock() -> None:
    rows = {"main": RoutingRow("main", 60, 15, 15, 1, "restore", T0, healthy_since=T0)}
    files = [ChannelRouting("main", 15, MAIN.methods), BACKUP]
    d = decide(files, rows, [Wish("main", "r", 0.0)], now=T0 + timedelta(minutes=1), restore=RESTORE)
    assert [(c.old, c.new) for c in d.changes] == [(15, 0)]
    assert d.rows["main"].healthy_since is None


def test_a_landed_write_whose_bookkeeping_was_lost_is_not_an_operator_edit() -> None:
    # paymon wrote 0 to the file, then crashed before recording it as applied.
    rows = {"main": RoutingRow("main", 60, 0, 60, 0, "drain", T0)}
    files = [ChannelRouting("main", 0, MAIN.methods), BACKUP]
    d = decide(files, rows, [Wish("main", "r", 0.0)], now=T0 + timedelta(seconds=5), restore=RESTORE)
    assert d.changes == []
    assert (d.rows["main"].applied, d.rows["main"].baseline) == (0, 60)
