"""`paymon backtest`: stored history through the rules, minute by minute, writing nothing; starting from the
weights recorded when the period began, clamped to the data the store has."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import cli
from monitor.backtest import backtest
from monitor.cli import main
from monitor.models import ProbeResult
from tests.test_pipeline import CHANNELS, Rig


def history(rig: Rig) -> None:
    """An hour of probes once a minute: main fails from minute 10 to minute 19."""
    start = rig.clock.now()
    rows = []
    for minute in range(60):
        at = start + timedelta(minutes=minute)
        rows.append(ProbeResult("main", "query", "timeout" if 10 <= minute < 20 else "ok", 0.1, at))
        rows.append(ProbeResult("backup", "query", "ok", 0.1, at))
    rig.app.store.add_probe_results(rows)
    rig.clock.advance(timedelta(minutes=60))



def test_the_timeline_matches_what_the_daemon_would_have_done(rig: Rig) -> None:
    start = rig.clock.now()
    history(rig)
    moments = backtest(rig.app.cfg, rig.app.store, {"main": 60, "backup": 40}, since=timedelta(minutes=60),
                       step=timedelta(minutes=1), now=rig.clock.now()).moments
    got = [(int((m.at - start).total_seconds() // 60), m.kind, m.text) for m in moments]
    assert got == [
        (12, "firing", "FIRING channel_down on main (main): probe_failures_in_a_row = 3 (>= 3)"),
        (12, "weight", "WEIGHT main (main) 60 → 0 (rule channel_down: drain)"),
        (20, "resolved", "RESOLVED channel_down on main (main): probe_failures_in_a_row = 0 (>= 3)"),
        (30, "weight", "WEIGHT main (main) 0 → 15 (restore step 1/3)"),
        (35, "weight", "WEIGHT main (main) 15 → 30 (restore step 2/3)"),
        (40, "weight", "WEIGHT main (main) 30 → 60 (restore step 3/3)"),
    ]
    # Nothing was written: no alert state, no outbox, no weight change, the file untouched.
    assert rig.app.store.alert_states() == {} and rig.app.store.outbox_depth() == {}
    assert rig.app.store.weight_history() == []
    assert (rig.folder / "channels.yaml").read_text(encoding="utf-8") == CHANNELS


def test_the_command(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.clock.set(datetime.now(UTC) - timedelta(hours=2))  # the command reads the real clock
    history(rig)
    rig.app.pipeline.close()
    rig.app.store.close()
    cfg = str(rig.folder / "monitor.yaml")
    since = "3h"
    assert main(["backtest", "-c", cfg, "--since", since, "--step", "2m"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"backtest over the last {since} every 2m: 1 firing, 1 resolved, 0 reminders, ")
    assert main(["backtest", "-c", cfg, "--since", since, "--step", "2m", "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)
    assert [m["kind"] for m in timeline][:2] == ["firing", "weight"]
    assert main(["backtest", "-c", cfg, "--since", "soon"]) == 2
    assert "--since/--step" in capsys.readouterr().err
    rig.app = rig.start()  # the fixture closes it


def live(rig: Rig, minutes: int) -> None:
    """The daemon itself over ``minutes``: a probe per channel and a cycle every minute, main failing from minute
    10 to 19, so the weight file and the weight audit record the drain and the restore steps as they happen."""
    for minute in range(minutes):
        rig.app.store.add_probe_results([
            ProbeResult("main", "query", "timeout" if 10 <= minute < 20 else "ok", 0.1, rig.clock.now()),
            ProbeResult("backup", "query", "ok", 0.1, rig.clock.now())])
        rig.cycle()
        rig.clock.advance(timedelta(minutes=1))


def audited(rig: Rig) -> list[tuple[datetime, str]]:
    return [(w.at, f"WEIGHT {w.channel} ({w.channel}) {w.old} → {w.new} ({w.reason})")
            for w in reversed(rig.app.store.weight_history())]


def test_after_a_drain_the_replay_starts_from_the_weights_of_the_time(rig: Rig) -> None:
    start = rig.clock.now()
    live(rig, 37)
    assert rig.weight("main") == 30  # today's file: part-way restored
    moments = backtest(rig.app.cfg, rig.app.store, {"main": 30, "backup": 40}, since=rig.clock.now() - start,
                       step=timedelta(minutes=1), now=rig.clock.now()).moments
    replayed = [(m.at, m.text) for m in moments if m.kind == "weight"]
    assert replayed == audited(rig) == [
        (start + timedelta(minutes=12), "WEIGHT main (main) 60 → 0 (rule channel_down: drain)"),
        (start + timedelta(minutes=30), "WEIGHT main (main) 0 → 15 (restore step 1/3)"),
        (start + timedelta(minutes=35), "WEIGHT main (main) 15 → 30 (restore step 2/3)"),
    ]


def test_a_replay_starting_inside_a_drain_restores_to_the_operators_weight(rig: Rig) -> None:
    start = rig.clock.now()
    live(rig, 45)
    assert rig.weight("main") == 60
    since = rig.clock.now() - (start + timedelta(minutes=15))  # main was drained then; the file says 60 today
    moments = backtest(rig.app.cfg, rig.app.store, {"main": 60, "backup": 40}, since=since,
                       step=timedelta(minutes=1), now=rig.clock.now()).moments
    assert [(m.at, m.text) for m in moments if m.kind == "weight"] == audited(rig)[1:] == [
        (start + timedelta(minutes=30), "WEIGHT main (main) 0 → 15 (restore step 1/3)"),
        (start + timedelta(minutes=35), "WEIGHT main (main) 15 → 30 (restore step 2/3)"),
        (start + timedelta(minutes=40), "WEIGHT main (main) 30 → 60 (restore step 3/3)"),
    ]


def test_an_operator_edit_is_replayed_when_it_happened(rig: Rig) -> None:
    start = rig.clock.now()
    live(rig, 5)
    text = (rig.folder / "channels.yaml").read_text(encoding="utf-8")
    (rig.folder / "channels.yaml").write_text(text.replace("weight: 40", "weight: 20"), encoding="utf-8")
    live(rig, 5)
    moments = backtest(rig.app.cfg, rig.app.store, {"main": 60, "backup": 20}, since=rig.clock.now() - start,
                       step=timedelta(minutes=1), now=rig.clock.now()).moments
    assert [(m.at, m.text) for m in moments if m.kind == "weight"] == audited(rig) == [
        (start + timedelta(minutes=5), "WEIGHT backup (backup) 40 → 20 (edited in the shared config)")]


def test_a_since_beyond_the_data_is_clamped_to_the_first_record(rig: Rig) -> None:
    start = rig.clock.now()
    history(rig)
    far = backtest(rig.app.cfg, rig.app.store, {"main": 60, "backup": 40}, since=timedelta(days=100000),
                   step=timedelta(minutes=1), now=rig.clock.now())
    near = backtest(rig.app.cfg, rig.app.store, {"main": 60, "backup": 40}, since=timedelta(minutes=60),
                    step=timedelta(minutes=1), now=rig.clock.now())
    assert far.clamped and far.start == start and far.steps == 61  # an hour of data: an hour of steps
    assert not near.clamped and far.moments == near.moments


def test_the_command_clamps_a_far_since_and_shows_progress(rig: Rig, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rig.clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    first = rig.clock.now()
    rig.app.store.add_probe_results([ProbeResult("main", "query", "ok", 0.1, first)])
    rig.app.pipeline.close()
    rig.app.store.close()
    cfg = str(rig.folder / "monitor.yaml")
    monkeypatch.setattr(cli, "BACKTEST_PROGRESS_STEPS", 2)  # a short range, reported as a long one would be
    assert main(["backtest", "-c", cfg, "--since", "100000d", "--step", "1h"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0] == "backtest: --since clamped to 2026-11-26 11:00:00 +08:00 (no data before)"  # said first
    progress = [line for line in err if line.startswith("backtest: ") and "steps" in line]
    assert progress and progress[-1].startswith("backtest: 100% (")
    assert "Traceback" not in captured.err
    assert captured.out.splitlines()[0].startswith("times in Asia/Shanghai (+08:00)")
    rig.app = rig.start()  # the fixture closes it


def test_an_empty_store_has_nothing_to_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_pipeline import CHANNELS, MONITOR

    (tmp_path / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    assert main(["backtest", "-c", str(tmp_path / "monitor.yaml"), "--since", "100000d"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("backtest: nothing to replay (the store has no orders and no probe results)")
    assert captured.out == ""
