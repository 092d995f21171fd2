"""The daemon's cycle and ``paymon backtest`` run the same evaluation step, and on the same history they tell the
same story: the same alerts at the same moments, the same weight changes."""

from __future__ import annotations

from datetime import timedelta

import monitor.alerts.evaluate
import monitor.backtest
import monitor.pipeline
from monitor.backtest import backtest
from monitor.models import ProbeResult
from tests.test_pipeline import Rig

MINUTES = 70



def test_both_call_the_one_evaluation_function() -> None:
    assert monitor.pipeline.evaluate is monitor.alerts.evaluate.evaluate
    assert monitor.backtest.evaluate is monitor.alerts.evaluate.evaluate


def live(rig: Rig) -> None:
    """An hour and ten minutes, one daemon cycle a minute: main's probes fail in minutes 10-19; backup takes
    eight orders a minute, all paid but in minutes 30-39, where only two are."""
    for minute in range(MINUTES):
        now = rig.clock.now()
        for channel in ("main", "backup"):
            outcome = "timeout" if channel == "main" and 10 <= minute < 20 else "ok"
            rig.app.store.add_probe_results([ProbeResult(channel, "query", outcome, 0.1, now)])
        paid = 2 if 30 <= minute < 40 else 8
        for i in range(8):
            oid = f"B{minute:03d}{i}"
            rig.events({"event": "order_created", "order_id": oid, "channel": "backup", "amount": "10.00"})
            if i < paid:
                rig.events({"event": "callback_received", "order_id": oid, "channel": "backup", "verified": True})
        rig.app.pipeline.cycle()
        rig.clock.advance(timedelta(minutes=1))


def test_backtest_replays_the_daemons_timeline(rig: Rig) -> None:
    start = rig.clock.now()
    live(rig)
    end = start + timedelta(minutes=MINUTES - 1)
    store = rig.app.store
    daemon = sorted(
        [(h["at"], h["kind"], h["channel"], h["rule"]) for h in store.alert_history(limit=1000)]
        + [(w.at, "weight", w.channel, f"{w.old}->{w.new}") for w in store.weight_history()]
    )
    # Replay the stored history with the weights the shop had at the start.
    moments = backtest(rig.app.cfg, store, {"main": 60, "backup": 40}, since=end - start,
                       step=timedelta(minutes=1), now=end).moments
    replayed = sorted((m.at, m.kind, m.channel, m.rule if m.kind != "weight" else m.text.split(") ")[1].split(" (")[0]
                       .replace(" → ", "->")) for m in moments)
    kinds = {(k, ch, r) for _, k, ch, r in daemon}
    assert ("firing", "main", "channel_down") in kinds and ("firing", "backup", "low_success") in kinds
    assert ("resolved", "main", "channel_down") in kinds and ("resolved", "backup", "low_success") in kinds
    assert sum(1 for _, k, _, _ in daemon if k == "weight") >= 4
    assert replayed == daemon
