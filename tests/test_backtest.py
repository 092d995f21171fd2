"""`paymon backtest`: stored history through the rules, minute by minute, writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

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
                       step=timedelta(minutes=1), now=rig.clock.now())
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
