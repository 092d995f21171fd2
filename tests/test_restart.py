"""A restart in every alert state neither sends again nor forgets to send (state lives in the database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_pipeline import Rig

FIRING = "🔴 FIRING [critical] main (main) · channel_down: probe_failures_in_a_row = 3 (threshold 3)"
WHY = "; last 3 probes (newest first): timeout ×3"  # a firing alert names the probes' outcomes
DRAIN = "⚖️ weight main (main): 60 → 0 (rule channel_down: drain)"


@pytest.fixture
def rig(tmp_path: Path, clock: Any) -> Any:
    (tmp_path / "cfg" / "var").mkdir(parents=True)
    r = Rig(tmp_path / "cfg", clock)
    r.probes("backup", "ok")
    yield r
    r.app.pipeline.close()
    r.app.store.close()


def test_restart_while_inactive(rig: Rig) -> None:
    rig.probes("main", "ok")
    assert rig.cycle() == []
    rig.restart()
    assert rig.cycle() == []


def test_restart_while_pending(rig: Rig) -> None:
    for i in range(10):  # 10 orders, 3 paid: a success ratio of 30 %, pending for low_success's `for: 2m`
        rig.events({"event": "order_created", "order_id": f"P{i}", "channel": "main"})
    rig.clock.advance(timedelta(minutes=4))
    for i in range(3):
        rig.events({"event": "callback_received", "order_id": f"P{i}", "channel": "main", "verified": True})
    rig.clock.advance(timedelta(minutes=12))
    rig.probes("main", "ok")
    assert rig.cycle() == []
    assert rig.app.store.alert_states()[("low_success", "main")].state == "pending"
    rig.restart()
    rig.clock.advance(timedelta(minutes=1))
    assert rig.cycle() == []  # the `for` clock kept running across the restart: 1 of 2 minutes
    rig.clock.advance(timedelta(minutes=1))
    sent = rig.cycle()
    assert [line for line in sent if "FIRING" in line] == [
        "🔴 FIRING [warning] main (main) · low_success: success_ratio = 30.0% (threshold 80.0%)"]


def test_restart_while_firing(rig: Rig) -> None:
    rig.probes("main", "timeout", "timeout", "timeout")
    assert rig.cycle() == [FIRING + WHY, DRAIN]
    rig.restart()
    rig.probes("main", "timeout")
    assert rig.cycle() == []
    rig.probes("main", "ok")
    assert rig.cycle() == [FIRING.replace("🔴 FIRING", "✅ RESOLVED").replace("= 3 (", "= 0 (")]  # no probes


def test_restart_while_firing_unannounced(rig: Rig) -> None:
    rig.app.store.add_silence("main", rig.clock.now() + timedelta(minutes=5))
    rig.probes("main", "timeout", "timeout", "timeout")
    assert rig.cycle() == [DRAIN]  # the page is held by the silence
    rig.restart()
    rig.clock.advance(timedelta(minutes=6))
    rig.probes("main", "timeout")
    # announced once the silence is over
    assert rig.cycle() == [FIRING.replace("= 3 (", "= 4 (") + WHY.replace("3", "4")]
    rig.restart()
    assert rig.cycle() == []


def test_restart_after_resolved(rig: Rig) -> None:
    rig.probes("main", "timeout", "timeout", "timeout")
    rig.cycle()
    rig.probes("main", "ok")
    assert rig.cycle()[0].startswith("✅ RESOLVED")
    rig.restart()
    assert rig.cycle() == []


def test_restart_with_notifications_still_queued(rig: Rig) -> None:
    """Queued but not yet delivered (a crash right after the commit): delivered once after the restart."""
    from monitor.errors import SinkError

    class Down:
        name = "console"

        def send(self, payload: object) -> None:
            raise SinkError("unreachable", retryable=True)

    rig.probes("main", "timeout", "timeout", "timeout")
    rig.app.pipeline.sinks["console"] = Down()  # the sink is down: the outbox keeps the rows for a retry
    assert rig.cycle() == []
    rig.restart()
    rig.clock.advance(timedelta(seconds=6))  # past the first retry's backoff
    assert rig.cycle() == [FIRING + WHY, DRAIN]
    assert rig.cycle() == []
