"""`paymon status` tells the truth a human needs: the probe state beside the rule state (a channel whose probes all
fail is not called healthy), no ratio beside no orders, the operator's baseline and the next restore step, one
labelled display time zone, and an exit code cron can act on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.models import ProbeResult
from monitor.status import EXIT_DOWN, EXIT_EVALUATION_FAILING, status_exit_code, status_view
from monitor.status_table import status_lines
from tests.test_pipeline import MONITOR, Rig


def view(rig: Rig) -> dict[str, Any]:
    return status_view(rig.app.cfg, rig.app.store, rig.clock.now(), {"main": rig.weight("main"),
                                                                     "backup": rig.weight("backup")})


def channel(v: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in v["channels"] if c["id"] == cid)


def row(v: dict[str, Any], cid: str) -> list[str]:
    return next(line for line in status_lines(v) if line.startswith(cid + " ")).split()


def test_before_any_probe_nothing_is_claimed(rig: Rig) -> None:
    v = view(rig)
    main_ = channel(v, "main")
    assert (main_["state"], main_["probes"], main_["success_ratio"], main_["orders"]) == (
        "unknown", {"state": "none yet", "failures": 0}, None, 0)
    assert v["timezone"] == "Asia/Shanghai"
    assert status_lines(v)[0] == "times in Asia/Shanghai (+08:00)"
    assert row(v, "main")[:8] == ["main", "unknown", "none", "yet", "60", "60", "-", "—"]  # no orders: no 0.0%
    assert status_exit_code(v) == 0


def test_a_channel_whose_probes_all_fail_is_not_healthy(rig: Rig) -> None:
    rig.probes("main", "ok", "timeout", "http_error")
    rig.probes("backup", "ok")
    assert rig.cycle() == []  # two in a row: no rule fires yet
    v = view(rig)
    assert (channel(v, "main")["state"], channel(v, "main")["probes"]) == ("failing", {"state": "failing",
                                                                                       "failures": 2})
    assert row(v, "main")[:4] == ["main", "failing", "failing", "2×"]
    assert (channel(v, "backup")["state"], channel(v, "backup")["probes"]["state"]) == ("healthy", "ok")
    assert status_exit_code(v) == EXIT_DOWN


def test_some_probes_failing_is_partial_and_not_down(rig: Rig) -> None:
    at = rig.clock.now()
    rig.app.store.add_probe_results([ProbeResult("main", "query", "ok", 0.1, at),
                                     ProbeResult("main", "balance", "timeout", 0.1, at)])
    v = view(rig)
    assert (channel(v, "main")["state"], channel(v, "main")["probes"]["state"]) == ("healthy", "partial")
    assert row(v, "main")[2] == "partial" and status_exit_code(v) == 0


def test_baseline_and_next_restore_follow_the_drain(rig: Rig) -> None:
    rig.probes("main", "ok", "timeout", "timeout", "timeout")
    rig.probes("backup", "ok")
    rig.cycle()  # channel_down fires: main drained
    v = view(rig)
    m = channel(v, "main")
    assert (m["state"], m["weight"], m["baseline"], m["next_restore"]) == ("down", 0, 60, None)
    assert row(v, "main")[2:8] == ["failing", "3×", "0", "60", "when", "healthy"] and status_exit_code(v) == EXIT_DOWN
    rig.probes("main", "ok")
    rig.cycle()  # resolved: healthy from now, the first step is due after healthy_for (10m)
    healthy = rig.clock.now()
    v = view(rig)
    m = channel(v, "main")
    assert (m["state"], m["probes"]["state"], m["weight"], m["baseline"]) == ("healthy", "ok", 0, 60)
    assert m["next_restore"] == (healthy + timedelta(minutes=10)).isoformat()
    due = healthy + timedelta(minutes=10)
    assert row(v, "main")[5:8] == [f"{due + timedelta(hours=8):%Y-%m-%d}", f"{due + timedelta(hours=8):%H:%M:%S}",
                                   "+08:00"]
    assert status_exit_code(v) == 0
    rig.clock.advance(timedelta(minutes=10))
    rig.cycle()  # step 1/3 (0 → 15); the next one is `every` (5m) later
    m = channel(view(rig), "main")
    assert (m["weight"], m["next_restore"]) == (15, (rig.clock.now() + timedelta(minutes=5)).isoformat())
    rig.clock.advance(timedelta(minutes=10))
    rig.cycle()
    rig.clock.advance(timedelta(minutes=5))
    rig.cycle()
    m = channel(view(rig), "main")
    assert (m["weight"], m["baseline"], m["next_restore"]) == (60, 60, None)


def test_the_display_zone_is_configurable_and_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from tests.test_pipeline import CHANNELS

    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(MONITOR + "display: {timezone: UTC}\n", encoding="utf-8")
    assert main(["status", "-c", str(tmp_path / "monitor.yaml"), "--json"]) == 0
    assert '"timezone": "UTC"' in capsys.readouterr().out
    assert main(["status", "-c", str(tmp_path / "monitor.yaml")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "times in UTC (+00:00)"
    (tmp_path / "monitor.yaml").write_text(MONITOR + "display: {timezone: Asia/Beijing}\n", encoding="utf-8")
    assert main(["status", "-c", str(tmp_path / "monitor.yaml")]) == 2
    err = capsys.readouterr().err
    assert "display.timezone" in err and "unknown time zone 'Asia/Beijing'" in err and "Traceback" not in err


def test_exit_codes() -> None:
    def of(*states: tuple[str, str]) -> dict[str, Any]:
        return {"channels": [{"state": s, "probes": {"state": p}} for s, p in states]}

    assert status_exit_code(of(("healthy", "ok"), ("unknown", "none yet"), ("degraded", "partial"))) == 0
    assert status_exit_code(of(("healthy", "ok"), ("down", "ok"))) == EXIT_DOWN
    assert status_exit_code(of(("degraded", "failing"))) == EXIT_DOWN
    assert status_exit_code(of(("maintenance", "failing"))) == 0  # a window the operator opened
    assert status_exit_code(of(("healthy", "ok")), evaluation_failing=True) == EXIT_EVALUATION_FAILING == 4
    assert EXIT_DOWN == 3
