"""Smart weights (``routing.mode: smart``) on a fixed clock: shares by success and fee, the floor, the dead band,
``every``, rules winning over smart, operator edits, switching smart off, and shadow mode end to end."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import LoadedConfig, load_config
from monitor.models import AlertState, ChannelStats, RoutingRow
from monitor.routing.plan import plan
from monitor.routing.policy import Decision
from monitor.routing.smart import Tally, is_smart, posterior_mean, shares
from tests.test_pipeline import Rig

T0 = datetime(2026, 1, 1, tzinfo=UTC)

MONITOR = """\
storage: {url: "sqlite:///paymon.db"}
defaults: {windows: [15m, 1h]}
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, actions: [notify, drain]}
routing:
  mode: MODE
  smart: {every: 15m, floor: 0.05, dead_band: 0.05, prior: [1, 1]}
  restore: {steps: [0.25, 0.5, 1.0], every: 5m, healthy_for: 10m}
"""
CHANNEL = """\
  - id: {id}
    kind: epay
    methods: [alipay]
    weight: 50
    fee_rate: {fee}
    endpoint: http://127.0.0.1:9/{id}/
    credentials: {{pid: "1001", key: "key-of-{id}-123456"}}
"""


def config(folder: Path, mode: str = "smart", fees: Mapping[str, float] | None = None) -> LoadedConfig:
    fees = fees or {"a": 0.006, "b": 0.006}
    (folder / "monitor.yaml").write_text(MONITOR.replace("MODE", mode), encoding="utf-8")
    (folder / "channels.yaml").write_text(
        "channels:\n" + "".join(CHANNEL.format(id=ch, fee=fee) for ch, fee in fees.items()), encoding="utf-8")
    return load_config(folder / "monitor.yaml", env={})


def stats(**tallies: tuple[int, int]) -> dict[tuple[str, str], ChannelStats]:
    """Window stats with the given (succeeded, failed) per channel over the smart window (1h)."""
    return {(ch, "1h"): ChannelStats(ch, "1h", s + f, s, f, s / (s + f) if s + f else None, 0, 0, None, None, None,
                                     None, 0) for ch, (s, f) in tallies.items()}


class Shop:
    """The weights as the shop reads them and paymon's rows, each cycle's decision written back (as ``auto``)."""

    def __init__(self, cfg: LoadedConfig) -> None:
        self.cfg = cfg
        self.weights = {c.id: c.weight for c in cfg.channels}
        self.rows: dict[str, RoutingRow] = {}

    def cycle(self, at: datetime, tallies: dict[tuple[str, str], ChannelStats],
              firing: tuple[str, ...] = ()) -> Decision:
        states = {("channel_down", ch): AlertState("channel_down", ch, "firing", at, at) for ch in firing}
        d = plan(self.cfg, states, {}, self.weights, self.rows, now=at, changes_last_hour=0, stats=tallies)
        self.rows = {ch: RoutingRow(r.channel, r.baseline, r.target, r.target, r.step, r.reason, r.changed_at,
                                    r.healthy_since, r.operator_hold) for ch, r in d.rows.items()}
        self.weights.update({ch: r.target for ch, r in d.rows.items()})
        return d


def test_shares_are_proportional_with_a_floor() -> None:
    assert shares({"a": 3.0, "b": 1.0}, 0.05) == pytest.approx({"a": 0.75, "b": 0.25})
    assert shares({"a": 1.0, "b": 0.0, "c": 1.0}, 0.05) == pytest.approx({"a": 0.475, "b": 0.05, "c": 0.475})
    assert shares({"a": 0.0, "b": 0.0}, 0.05) == {"a": 0.5, "b": 0.5}
    assert shares({"a": 1.0, "b": 0.0}, 0.6) == {"a": 0.5, "b": 0.5}  # a floor above 1/n: equal shares
    assert posterior_mean(Tally(8, 0), (1.0, 1.0)) == 0.9


def test_weights_follow_the_posterior_success_ratio(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    d = shop.cycle(T0, stats(a=(94, 4), b=(68, 30)))  # posterior means 0.95 and 0.69
    assert [(c.channel, c.old, c.new) for c in d.changes] == [("a", 50, 58), ("b", 50, 42)]
    assert all(is_smart(c.reason) and c.actor == "paymon" and c.rule is None for c in d.changes)
    assert d.changes[0].reason == "smart: 58% of alipay, success 95.0%, fee 0.60%"
    # The operator's baseline stays in the row; only the target is smart.
    assert {ch: (r.baseline, r.target) for ch, r in shop.rows.items()} == {"a": (50, 58), "b": (50, 42)}


def test_a_higher_fee_lowers_the_share(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path, fees={"a": 0.0, "b": 0.3}))
    d = shop.cycle(T0, stats(a=(95, 3), b=(95, 3)))
    assert [(c.channel, c.new) for c in d.changes] == [("a", 59), ("b", 41)]  # 1 : 0.7


def test_the_floor_keeps_a_bad_but_healthy_channel_in_traffic(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    shop.cycle(T0, stats(a=(98, 0), b=(0, 98)))
    assert shop.weights == {"a": 95, "b": 5}


def test_no_change_inside_the_dead_band(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    assert shop.cycle(T0, stats(a=(95, 3), b=(90, 8))).changes == []  # 51 % vs 49 %: within 5 points
    assert shop.weights == {"a": 50, "b": 50}
    assert shop.rows["a"].reason == ""


def test_at_most_one_change_every_period(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    assert len(shop.cycle(T0, stats(a=(94, 4), b=(68, 30))).changes) == 2
    worse = stats(a=(94, 4), b=(10, 88))
    assert shop.cycle(T0 + timedelta(minutes=14), worse).changes == []
    assert [(c.channel, c.new) for c in shop.cycle(T0 + timedelta(minutes=15), worse).changes] == [
        ("a", 90), ("b", 10)]


def test_rules_win_and_a_drained_channel_is_restored_to_its_baseline(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    shop.cycle(T0, stats(a=(94, 4), b=(68, 30)))
    assert shop.weights == {"a": 58, "b": 42}
    d = shop.cycle(T0 + timedelta(minutes=1), stats(a=(94, 4), b=(68, 30)), firing=("a",))
    assert [(c.channel, c.old, c.new, c.rule) for c in d.changes] == [("a", 58, 0, "channel_down")]
    assert shop.weights["b"] == 42  # alone among the healthy: smart leaves it be
    assert shop.rows["a"].baseline == 50
    steps = []
    for minute in range(2, 40):
        d = shop.cycle(T0 + timedelta(minutes=minute), stats(a=(0, 0), b=(68, 30)))
        steps += [(minute, c.channel, c.new, c.reason.split(":")[0]) for c in d.changes]
    # Restored in steps to the operator's 50 (not to the smart 58), then smart again once it is back.
    assert steps == [(12, "a", 12, "restore step 1/3"), (17, "a", 25, "restore step 2/3"),
                     (22, "a", 50, "restore step 3/3"), (23, "a", 42, "smart"), (23, "b", 58, "smart")]


def test_an_operator_edit_becomes_the_baseline_and_is_not_overwritten_at_once(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    shop.cycle(T0, stats(a=(94, 4), b=(68, 30)))
    shop.weights["b"] = 80  # edited by hand
    d = shop.cycle(T0 + timedelta(minutes=1), stats(a=(94, 4), b=(68, 30)))
    assert [(c.channel, c.actor, c.new) for c in d.changes] == [("b", "operator", 80)]
    assert (shop.rows["b"].baseline, shop.weights["b"]) == (80, 80)


def test_switching_smart_off_brings_the_baselines_back(tmp_path: Path) -> None:
    shop = Shop(config(tmp_path))
    shop.cycle(T0, stats(a=(94, 4), b=(68, 30)))
    shop.cfg = config(tmp_path, mode="auto")
    d = shop.cycle(T0 + timedelta(minutes=1), stats(a=(94, 4), b=(68, 30)))
    assert sorted((c.channel, c.old, c.new) for c in d.changes) == [("a", 58, 50), ("b", 42, 50)]
    assert shop.cycle(T0 + timedelta(minutes=2), stats()).changes == []


@pytest.mark.parametrize("mode", ["smart", "shadow"])
def test_smart_end_to_end_and_its_shadow_mode(rig: Rig, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon's cycle over the real store and YAML sink: ``smart`` writes the weights, ``smart.shadow`` only
    says what it would write."""
    path = rig.folder / "monitor.yaml"
    smart = "  mode: smart\n" + ("  smart: {shadow: true}\n" if mode == "shadow" else "")
    path.write_text(path.read_text(encoding="utf-8").replace("routing:\n", "routing:\n" + smart), encoding="utf-8")
    rig.restart()
    for ch, paid in (("main", 4), ("backup", 10)):
        for i in range(10):
            rig.events({"event": "order_created", "order_id": f"{ch}{i}", "channel": ch, "amount": "10.00"})
        for i in range(paid):
            rig.events({"event": "callback_received", "order_id": f"{ch}{i}", "channel": ch, "verified": True})
    rig.clock.advance(timedelta(minutes=16))  # the unpaid orders fail at their 15 min pay timeout
    with caplog.at_level(logging.INFO):
        lines = rig.cycle()
        rig.cycle()
    # the default prior [19, 1]: posterior means 23/30 and 29/30; baselines 60 + 40: shares 44 % and 56 %
    if mode == "smart":
        assert lines == ["⚖️ weight main (main): 60 → 44 (smart: 44% of alipay, success 76.7%, fee 0.00%)",
                         "⚖️ weight backup (backup): 40 → 56 (smart: 56% of alipay, success 96.7%, fee 0.00%)"]
        assert (rig.weight("main"), rig.weight("backup")) == (44, 56)
    else:
        assert lines == [] and (rig.weight("main"), rig.weight("backup")) == (60, 40)
        assert caplog.text.count("routing suggestion (mode: smart, shadow, nothing written): main 60 -> 44") == 1
        assert rig.app.store.weight_history() == []


def test_smart_changes_leave_the_hourly_budget_to_the_rules(rig: Rig) -> None:
    """A smart lowering does not use up ``max_changes_per_hour``: a drain right after it still happens."""
    path = rig.folder / "monitor.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "routing:\n", "routing:\n  mode: smart\n  max_changes_per_hour: 1\n"), encoding="utf-8")
    rig.restart()
    for i in range(10):
        rig.events({"event": "order_created", "order_id": f"m{i}", "channel": "main", "amount": "10.00"},
                   {"event": "order_created", "order_id": f"b{i}", "channel": "backup", "amount": "10.00"},
                   {"event": "callback_received", "order_id": f"b{i}", "channel": "backup", "verified": True})
    rig.clock.advance(timedelta(minutes=16))
    assert [line.split(" (")[0] for line in rig.cycle()] == ["⚖️ weight main", "⚖️ weight backup"]
    assert rig.weight("main") < 60
    rig.probes("backup", "timeout", "timeout", "timeout")
    assert rig.cycle()[-1].startswith("⚖️ weight backup (backup): 60 → 0 (rule channel_down: drain)")
