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
