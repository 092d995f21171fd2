"""A `detector: cusum` rule in the daemon's own cycle: it learns the channel's baseline, fires on a drop within a
few orders, survives a restart with its statistic, and resolves when the success ratio has recovered."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.test_pipeline import Rig

RULE = """  - {name: success_drop, detector: cusum, signal: success_ratio, false_alarms_per_week: 1, severity: critical,
     channels: [main], actions: [notify]}
notify: {language: en}"""


def orders(rig: Rig, start: int, count: int, paid: bool) -> None:
    """``count`` orders on main, one a minute; paid ones get a verified callback a minute later."""
    for i in range(start, start + count):
        rig.events({"event": "order_created", "order_id": f"O{i}", "channel": "main"})
        if paid:
            rig.clock.advance(timedelta(seconds=30))
            rig.events({"event": "callback_received", "order_id": f"O{i}", "channel": "main", "verified": True})
            rig.clock.advance(timedelta(seconds=30))
        else:
            rig.clock.advance(timedelta(minutes=1))


def test_cusum_fires_on_a_drop_survives_a_restart_and_resolves(tmp_path: Path, clock: Any) -> None:
    (tmp_path / "cfg" / "var").mkdir(parents=True)
    rig = Rig(tmp_path / "cfg", clock)
    try:
        path = tmp_path / "cfg" / "monitor.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("notify: {language: en}", RULE), encoding="utf-8")
        rig.restart()
        orders(rig, 0, 150, paid=True)          # 2.5 hours of a healthy channel: the baseline
        rig.probes("main", "ok")
        assert rig.cycle() == []
        state = rig.app.store.alert_states()[("success_drop", "main")]
        assert state.state == "inactive" and json.loads(state.detector or "{}")["updated_at"] is not None
        fired: list[str] = []
        minutes = 0
        for i in range(150, 200):                 # then nobody manages to pay
            orders(rig, i, 1, paid=False)
            minutes += 1
            fired += [line for line in rig.cycle() if "success_drop" in line]
            if fired:
                break
        # Failures are decided at the 15 min pay timeout, so the first ones count 15 minutes in.
        assert fired and fired[0].startswith("🔴 FIRING [critical] main (main) · success_drop")
        assert minutes <= 15 + 10, minutes
        rig.restart()                              # the alert and the detector state survive
        assert rig.app.store.alert_states()[("success_drop", "main")].state == "firing"
        resolved: list[str] = []
        for i in range(200, 260):                  # buyers pay again
            orders(rig, i, 1, paid=True)
            resolved += [line for line in rig.cycle() if "success_drop" in line]
            if resolved:
                break
        assert resolved and resolved[0].startswith("✅ RESOLVED [critical] main (main) · success_drop")
    finally:
        rig.app.pipeline.close()
        rig.app.store.close()


PROBE_RULE = """  - {name: probe_drop, detector: cusum, signal: probe_success_ratio, window: 15m,
     false_alarms_per_week: 1, channels: [main], actions: [notify]}
notify: {language: en}"""


def test_cusum_on_probe_outcomes_leaves_past_firing_out_of_its_baseline(tmp_path: Path, clock: Any) -> None:
    (tmp_path / "cfg" / "var").mkdir(parents=True)
    rig = Rig(tmp_path / "cfg", clock)
    try:
        path = tmp_path / "cfg" / "monitor.yaml"
        text = path.read_text(encoding="utf-8").replace("notify: {language: en}", PROBE_RULE)
        text = text.replace("threshold: 3, severity: critical", "threshold: 99, severity: critical")  # mute
        path.write_text(text, encoding="utf-8")
        rig.restart()
        rig.probes("backup", "ok")
        for _ in range(150):  # 150 probes, 1 every 20 s: 50 minutes of a healthy channel, plus 10 more minutes
            rig.probes("main", "ok")
            rig.clock.advance(19)
        rig.clock.advance(timedelta(minutes=10))
        assert [line for line in rig.cycle() if "probe_drop" in line] == []
        sent: list[str] = []
        for _ in range(30):  # the gateway starts failing every probe
            rig.probes("main", "timeout")
            rig.clock.advance(19)
            sent += [line for line in rig.cycle() if "probe_drop" in line]
        assert sent[:1] == [line for line in sent if "FIRING" in line][:1] and sent, sent
        firing = rig.app.store.alert_states()[("probe_drop", "main")]
        assert firing.state == "firing"
        for _ in range(60):  # healthy again
            rig.probes("main", "ok")
            rig.clock.advance(19)
            sent += [line for line in rig.cycle() if "probe_drop" in line]
        assert [line.split(" ")[1] for line in sent] == ["FIRING", "RESOLVED"]
        # The firing period is now history: the next baseline is still the healthy rate, not the outage's.
        from monitor.snapshot import read_snapshot as snapshot

        snap = snapshot(rig.app.cfg, rig.app.store, rig.clock.now())
        [(start, end)] = snap.firing_periods[("probe_drop", "main")]
        assert end is not None and start < end
    finally:
        rig.app.pipeline.close()
        rig.app.store.close()
