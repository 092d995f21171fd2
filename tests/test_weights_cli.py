"""``paymon weights show|history|set|restore`` on the pipeline's rig: the real SQLite store, the real YAML weight
sink and the real cycle on a fixed clock. The operator's change must reach the file at once, be audited with who
made it, and be taken by the next cycle as paymon's own weight (never as a hand edit, never overwritten)."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor import locks
from monitor.cli import main, parser
from monitor.errors import PaymonError
from monitor.locks import routing_lock
from monitor.routing.operator import set_weight
from monitor.routing.policy import ChannelRouting
from monitor.weights_cmd import run_weights
from tests.test_pipeline import Rig

ME = f"cli:{getpass.getuser()}"


def weights(rig: Rig, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``paymon weights ARGV`` on the rig's app (its store, sink and fixed clock): exit code, stdout, stderr."""
    capsys.readouterr()
    args = parser().parse_args(["weights", *argv, "-c", str(rig.folder / "monitor.yaml")])
    try:
        code = run_weights(rig.app, args)
    except PaymonError as exc:
        print(f"paymon: {exc}", file=sys.stderr)
        code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err


def drain_main(rig: Rig) -> None:
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    rig.cycle()
    rig.probes("main", "timeout", "timeout", "timeout")
    assert rig.cycle()[1] == "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"


def test_show_says_what_the_shop_reads_and_why(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    drain_main(rig)
    code, out, _ = weights(rig, capsys, "show", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"channel": "main", "name": "main", "shop_weight": 0, "target": 0, "baseline": 60,
         "reason": "rule channel_down: drain", "holding": ["channel_down"], "next_restore": None,
         "operator_hold": False},
        {"channel": "backup", "name": "backup", "shop_weight": 40, "target": 40, "baseline": 40, "reason": "",
         "holding": [], "next_restore": None, "operator_hold": False},
    ]
    rig.probes("main", "ok")
    rig.cycle()  # resolved: healthy from now on, the first restore step is due healthy_for (10m) later
    code, out, _ = weights(rig, capsys, "show")
    lines = out.splitlines()
    assert lines[0].startswith("routing mode auto; times in Asia/Shanghai (+08:00)")
    assert lines[1].split() == ["CHANNEL", "SHOP", "TARGET", "BASELINE", "WHY", "LOWER", "NEXT", "RESTORE", "HOLD"]
    due = (rig.clock.now() + timedelta(minutes=10)).astimezone(ZoneInfo("Asia/Shanghai"))
    assert lines[2].split() == ["main", "0", "0", "60", "rule", "channel_down:", "drain",
                                f"{due:%Y-%m-%d}", f"{due:%H:%M:%S}", "+08:00", "-"]
    assert lines[3].split() == ["backup", "40", "40", "40", "-", "-", "-"]


def test_set_is_written_at_once_audited_and_kept_by_the_next_cycle(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    rig.cycle()
    code, out, _ = weights(rig, capsys, "set", "backup", "25")
    assert (code, out) == (0, "backup: weight 40 → 25 (the new baseline)\n")
    assert rig.weight("backup") == 25
    latest = rig.app.store.weight_history()[0]
    assert (latest.channel, latest.old, latest.new, latest.actor, latest.reason) == (
        "backup", 40, 25, ME, f"set by {ME}")
    # The daemon's next cycle sends the queued notification, and sees 25 as its own applied weight: no "edit".
    assert rig.cycle() == [f"⚖️ weight backup (backup): 40 → 25 (set by {ME})"]
    assert rig.cycle() == []
    assert len(rig.app.store.weight_history()) == 1
    assert rig.app.store.routing_states()["backup"].baseline == 25
    code, out, _ = weights(rig, capsys, "set", "backup", "25")
    assert (code, out) == (0, "backup: weight is 25 already; nothing changed\n")


def test_set_while_a_rule_holds_it_down_is_an_operator_hold(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    drain_main(rig)
    code, out, _ = weights(rig, capsys, "set", "main", "20")
    assert code == 0
    assert out == ("main: weight 0 → 20 (the new baseline); channel_down still fires on it: this is an operator "
                   "hold, paymon leaves the weight alone until it resolves\n")
    assert rig.weight("main") == 20
    rig.probes("main", "timeout")
    rig.cycle()
    assert rig.weight("main") == 20  # not drained again while the rule fires: the operator decided
    rig.probes("main", "ok")
    assert rig.cycle()[0].startswith("✅ RESOLVED")
    for _ in range(20):
        rig.clock.advance(timedelta(minutes=1))
        assert rig.cycle() == []
    assert rig.weight("main") == 20  # 20 is the baseline now: nothing to restore to 60


def test_restore_is_refused_while_the_drain_rule_fires_unless_forced(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    drain_main(rig)
    cfg = str(rig.folder / "monitor.yaml")
    code = main(["weights", "restore", "main", "-c", cfg])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("paymon: main: not restored, channel_down still fires on it (weight 0, baseline 60); wait until "
                   "it resolves, or use --force\n")
    assert rig.weight("main") == 0
    code, out, _ = weights(rig, capsys, "restore", "main", "--force")
    assert code == 0 and out.startswith("main: weight 0 → 60 (its baseline); forced while channel_down fires")
    assert rig.weight("main") == 60
    rig.probes("main", "timeout")
    rig.cycle()
    assert rig.weight("main") == 60  # the forced restore holds until the rule resolves
    assert rig.app.store.routing_states()["main"].operator_hold


def test_restore_skips_the_remaining_steps(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    drain_main(rig)
    rig.probes("main", "ok")
    rig.cycle()
    restored = []
    for _ in range(11):
        rig.clock.advance(timedelta(minutes=1))
        restored += rig.cycle()
    assert restored == ["⚖️ weight main (main): 0 → 15 (restore step 1/3)"]
    code, out, _ = weights(rig, capsys, "restore", "main")
    assert (code, out) == (0, "main: weight 15 → 60 (its baseline)\n")
    assert rig.weight("main") == 60
    assert rig.cycle() == [f"⚖️ weight main (main): 15 → 60 (restored by {ME})"]
    for _ in range(15):
        rig.clock.advance(timedelta(minutes=1))
        assert rig.cycle() == []  # no step 2/3 left to take
    code, out, _ = weights(rig, capsys, "restore", "main")
    assert (code, out) == (0, "main: weight 60 is its baseline already; nothing to restore\n")


def test_history_shows_every_actor_with_filters(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    drain_main(rig)                                    # rule
    path = rig.folder / "channels.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("weight: 0 ", "weight: 10"), encoding="utf-8")
    rig.clock.advance(60)
    rig.cycle()                                        # operator-edit
    rig.clock.advance(60)
    weights(rig, capsys, "set", "backup", "30")        # cli:<user>
    rig.probes("main", "ok")
    rig.clock.advance(60)
    rig.cycle()
    code, out, _ = weights(rig, capsys, "history", "--json")
    assert code == 0
    assert [(h["channel"], h["old"], h["new"], h["rule"], h["actor"]) for h in json.loads(out)] == [
        ("backup", 40, 30, None, ME),
        ("main", 0, 10, None, "operator-edit"),
        ("main", 60, 0, "channel_down", "rule"),
    ]
    code, out, _ = weights(rig, capsys, "history", "--channel", "main")
    lines = out.splitlines()
    assert lines[0] == "times in Asia/Shanghai (+08:00), newest first"
    assert lines[1].split() == ["TIME", "CHANNEL", "CHANGE", "REASON", "RULE", "ACTOR"]
    assert lines[2].split()[3:] == ["main", "0", "→", "10", "edited", "in", "the", "shared", "config", "-",
                                    "operator-edit"]
    assert lines[3].split()[3:] == ["main", "60", "→", "0", "rule", "channel_down:", "drain", "channel_down",
                                    "rule"]
    assert len(lines) == 4
    code, out, _ = weights(rig, capsys, "history", "--since", "90s", "--json")
    assert [h["actor"] for h in json.loads(out)] == [ME]
    code, out, _ = weights(rig, capsys, "history", "--channel", "backup", "--since", "1s")
    assert out == "no weight changes recorded for backup in the last 1s\n"


def test_a_set_recorded_but_never_written_is_written_by_the_next_cycle(rig: Rig) -> None:
    """The command died between recording the change and writing the file: the cycle finishes its work, and
    neither loses the operator's weight nor mistakes it for a hand edit."""
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    rig.cycle()
    store = rig.app.store
    edit = set_weight(ChannelRouting("backup", 40, ("alipay",)), store.routing_states()["backup"], 35, holding=[],
                      now=rig.clock.now(), actor=ME)
    store.save_routing([edit.row], edit.changes)
    assert rig.weight("backup") == 40
    rig.cycle()
    assert rig.weight("backup") == 35
    assert [(w.old, w.new, w.actor) for w in store.weight_history()] == [(40, 35, ME)]
    assert store.routing_states()["backup"].applied == 35


def test_a_busy_routing_lock_changes_nothing(rig: Rig, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "ROUTING_WAIT_S", 0.05)
    with routing_lock(rig.app.cfg.monitor.storage.url):
        code, _, err = weights(rig, capsys, "set", "backup", "5")
        assert code == 1 and "another paymon is changing routing weights on this store; try again" in err
        rig.probes("main", "timeout", "timeout", "timeout")
        rig.cycle()  # the cycle leaves the weights alone rather than race the holder
        assert rig.weight("main") == 60 and rig.weight("backup") == 40
    rig.cycle()  # and catches up once it is free
    assert rig.weight("main") == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["set", "mian", "10"], "paymon: unknown channel 'mian'; did you mean main?"),
    (["restore", "bakcup"], "paymon: unknown channel 'bakcup'; did you mean backup?"),
    (["history", "--channel", "zzz"], "paymon: unknown channel 'zzz'; channels: main, backup"),
    (["set", "main", "10001"], "paymon weights set: argument N: must be from 0 to 10000, got 10001 "
                               "(see paymon weights set --help)"),
    (["set", "main", "-1"], "paymon weights set: argument N: must be from 0 to 10000, got -1 "
                            "(see paymon weights set --help)"),
])
def test_mistakes_are_one_line_exit_2(rig: Rig, capsys: pytest.CaptureFixture[str], argv: list[str],
                                      message: str) -> None:
    capsys.readouterr()
    try:
        code = main(["weights", *argv, "-c", str(rig.folder / "monitor.yaml")])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert err == message + "\n"
    assert rig.weight("main") == 60


def test_setting_the_last_channel_of_a_method_to_0_is_done_with_a_warning(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    rig.cycle()
    assert weights(rig, capsys, "set", "backup", "0")[2] == ""
    code, out, err = weights(rig, capsys, "set", "main", "0")
    assert (code, out) == (0, "main: weight 60 → 0 (the new baseline)\n")
    assert err == "warning: alipay now has fewer than routing.min_active_per_method (1) channels with weight > 0\n"
    assert rig.weight("main") == 0  # the operator decided, knowingly
