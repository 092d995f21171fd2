"""Maintenance windows: validated in channels.yaml, open at the right local times, and while open they mute the
channel's alerts, show it as `maintenance` and (with drain) take its weight to 0 for the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.config import ChannelConfig
from monitor.config.maintenance import open_window
from tests.test_pipeline import Rig

BASE = {"id": "x", "kind": "epay", "weight": 1, "endpoint": "http://127.0.0.1:1/x/"}


def channel(*windows: dict[str, Any], tz: str = "Asia/Shanghai") -> ChannelConfig:
    return ChannelConfig.model_validate({**BASE, "timezone": tz, "maintenance": list(windows)})


@pytest.mark.parametrize(
    ("window", "utc", "is_open"),
    [
        ({"every": "daily", "at": "03:00", "for": "30m"}, "2026-11-25T19:10:00", True),   # 03:10 in Shanghai
        ({"every": "daily", "at": "03:00", "for": "30m"}, "2026-11-25T19:40:00", False),  # 03:40
        ({"every": "daily", "at": "23:30", "for": "1h"}, "2026-11-25T16:10:00", True),    # 00:10, past midnight
        ({"every": "weekly", "day": "sun", "at": "02:00", "for": "2h"}, "2026-11-28T18:30:00", True),   # Sun 02:30
        ({"every": "weekly", "day": "sun", "at": "02:00", "for": "2h"}, "2026-11-29T18:30:00", False),  # Mon 02:30
        ({"start": "2026-12-01 02:00", "end": "2026-12-01 04:00"}, "2026-11-30T18:30:00", True),
        ({"start": "2026-12-01 02:00", "end": "2026-12-01 04:00"}, "2026-11-30T20:00:00", False),  # 04:00 excl.
    ],
)
def test_open_in_the_channels_time_zone(window: dict[str, Any], utc: str, is_open: bool) -> None:
    ch = channel(window)
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert (open_window(ch.maintenance, ch.timezone, at) is not None) is is_open


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "2026-12-01 02:00"}, "a one-off window needs 'start' and 'end'"),
        ({"start": "2026-12-01 04:00", "end": "2026-12-01 02:00"}, "'end' must be after 'start'"),
        ({"start": "tomorrow", "end": "2026-12-01 02:00"}, "expected a wall-clock time"),
        ({"every": "daily", "at": "03:00"}, "a recurring window needs 'every', 'at' and 'for'"),
        ({"every": "weekly", "at": "03:00", "for": "1h"}, "'day' goes with 'every: weekly'"),
        ({"every": "daily", "at": "25:00", "for": "1h"}, "expected a time of day"),
        ({"every": "daily", "at": "03:00", "for": "2d"}, "longer than the period"),
    ],
)
def test_bad_windows_are_config_errors(window: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        channel(window)


def test_an_open_window_mutes_drains_and_then_restores(tmp_path: Path, clock: Any) -> None:
    (tmp_path / "cfg" / "var").mkdir(parents=True)
    rig = Rig(tmp_path / "cfg", clock)
    try:
        start = clock.now().astimezone(UTC)
        text = (tmp_path / "cfg" / "channels.yaml").read_text(encoding="utf-8")
        window = (f'    maintenance: [{{start: "{(start + timedelta(hours=8)):%Y-%m-%d %H:%M}", '
                  f'end: "{(start + timedelta(hours=8, minutes=30)):%Y-%m-%d %H:%M}", drain: true}}]\n')
        text = text.replace('    credentials: {pid: "1001", key: "main-key-123456"}\n',
                            '    credentials: {pid: "1001", key: "main-key-123456"}\n' + window, 1)
        (tmp_path / "cfg" / "channels.yaml").write_text(text, encoding="utf-8")
        rig.restart()
        rig.probes("backup", "ok")
        rig.probes("main", "ok")
        assert rig.cycle() == ["⚖️ weight main (main): 60 → 0 (maintenance window)"]
        rig.probes("main", "timeout", "timeout", "timeout")
        assert rig.cycle() == []  # it fails during the window: recorded, not paged
        assert rig.app.store.alert_states()[("channel_down", "main")].state == "firing"
        from monitor.status import status_view

        view = status_view(rig.app.cfg, rig.app.store, clock.now(), {"main": 0, "backup": 40})
        assert view["channels"][0]["state"] == "maintenance"
        clock.advance(timedelta(minutes=31))  # the window ends while the channel still fails
        rig.probes("main", "timeout")
        assert rig.cycle() == [
            "🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 4 (threshold 3); "
            "last 4 probes (newest first): timeout ×4"]
        rig.probes("main", "ok")
        assert rig.cycle()[0].startswith("✅ RESOLVED")
    finally:
        rig.app.pipeline.close()
        rig.app.store.close()
