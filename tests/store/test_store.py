"""Store behaviour on SQLite and PostgreSQL: round trips, idempotent ingestion, outbox, routing audit, times."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest

from monitor.clock import FixedClock
from monitor.errors import StorageError
from monitor.models import AlertEvent, AlertState, OrderEvent, ProbeResult, WeightChange
from monitor.store import Checkpoint, RoutingRow, Store
from monitor.store.orders import merge_event


def ev(clock: FixedClock, event: str, order: str, minutes: float = 0, **kw: object) -> OrderEvent:
    return OrderEvent(ts=clock.now() + timedelta(minutes=minutes), event=event, order_id=order, channel="c1",
                      **kw)  # type: ignore[arg-type]


def test_schema_is_at_head(store: Store) -> None:
    assert store.revision() == "0009"
    assert store.ping()


def test_probe_results_round_trip_and_streaks(store: Store, clock: FixedClock) -> None:
    outcomes = ["ok", "timeout", "ok", "http_error", "timeout", "connect_error"]
    store.add_probe_results(
        ProbeResult("c1", "query", o, 0.1 * i, clock.now() + timedelta(seconds=i), f"d{i}")
        for i, o in enumerate(outcomes)
    )
    store.add_probe_results([ProbeResult("c2", "query", "ok", 0.2, clock.now(), "")])
    store.add_probe_results([ProbeResult("c2", "balance", "ok", 0.2, clock.now(), "", None, 125.5)])
    store.add_probe_results([ProbeResult("c3", "query", "timeout", 0.2, clock.now(), "")])
    assert store.probe_failures_in_a_row() == {("c1", "query"): 3, ("c2", "query"): 0, ("c3", "query"): 1,
                                               ("c2", "balance"): 0}
    assert store.last_probes()[("c2", "balance")].value == 125.5
    newest = store.probe_results(channel="c1", limit=2)
    assert [r.outcome for r in newest] == ["connect_error", "timeout"]
    assert newest[0].started_at == clock.now() + timedelta(seconds=5)
    assert newest[0].started_at.tzinfo is not None and newest[0].started_at.utcoffset() == timedelta(0)
    assert store.last_probes()[("c1", "query")].detail == "d5"


def test_times_keep_microseconds(store: Store, clock: FixedClock) -> None:
    at = clock.now() + timedelta(microseconds=123456)
    store.add_probe_results([ProbeResult("c1", "query", "ok", 0.1, at)])
    assert store.probe_results()[0].started_at == at


def test_naive_datetimes_are_refused(store: Store, clock: FixedClock) -> None:
    with pytest.raises(Exception, match="naive"):
        store.add_probe_results([ProbeResult("c1", "query", "ok", 0.1, clock.now().replace(tzinfo=None))])


def test_events_merge_into_one_row_and_replays_are_duplicates(store: Store, clock: FixedClock) -> None:
    events = [
        ev(clock, "order_created", "A", 0, amount=Decimal("10.00"), method="alipay"),
        ev(clock, "pay_redirect", "A", 0.1),
        ev(clock, "callback_received", "A", 2, verified=True, trade_no="T1",
           paid_at=clock.now() + timedelta(minutes=1.5)),
        ev(clock, "order_paid", "A", 2.1),
        ev(clock, "order_created", "B", 1),
    ]
    first = store.apply_events(events, checkpoint=Checkpoint("src", "1:2", 100))
    assert (first.accepted, first.duplicate) == (5, 0)
    again = store.apply_events(events, checkpoint=Checkpoint("src", "1:2", 200))
    assert (again.accepted, again.duplicate) == (0, 5)
    assert store.order_count() == 2
    assert store.checkpoint("src") == Checkpoint("src", "1:2", 200)
    df = store.orders_frame(clock.now() - timedelta(hours=1))
    a = df.set_index("order_id").loc["A"]
    assert a["amount"] == "10.00" and a["trade_no"] == "T1" and a["method"] == "alipay"
    assert a["channel_paid_at"] == clock.now() + timedelta(minutes=1.5)
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"


def test_earliest_time_wins_whatever_the_order(store: Store, clock: FixedClock) -> None:
    store.apply_events([ev(clock, "order_created", "A", 5)])
    r = store.apply_events([ev(clock, "order_created", "A", 1), ev(clock, "order_created", "A", 3)])
    assert (r.accepted, r.duplicate) == (1, 1)
    created = store.orders_frame(clock.now() - timedelta(hours=1))["created_at"].iloc[0]
    assert created == clock.now() + timedelta(minutes=1)


def test_unverified_callback_goes_to_its_own_column() -> None:
    from datetime import datetime

    row: dict[str, object] = {"order_id": "A", "channel": "c1"}
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert merge_event(row, OrderEvent(t, "callback_received", "A", "c1", verified=False))
    assert row["unverified_callback_at"] == t and "callback_at" not in row
    assert not merge_event(row, OrderEvent(t, "callback_received", "A", "c1", verified=False))


def test_alert_state_history_and_outbox_commit_together(store: Store, clock: FixedClock) -> None:
    state = AlertState("r1", "c1", "firing", clock.now(), clock.now(), clock.now(), 0, 3.0)
    event = AlertEvent("firing", "r1", "c1", "critical", clock.now(), 3.0, 3.0, "probe_failures_in_a_row", "x")
    store.save_alerts([state], [event], ["console", "telegram"])
    store.save_alerts([state], [event], ["console"])  # the same event again is not queued twice
    assert store.alert_states()[("r1", "c1")] == state
    assert store.outbox_depth() == {"console": 1, "telegram": 1}
    items = store.due_outbox("console")
    assert len(items) == 1 and items[0].payload["kind"] == "firing" and items[0].payload["rule"] == "r1"
    store.mark_retry(items[0].id, "busy", clock.now() + timedelta(seconds=30))
    assert store.due_outbox("console") == []
    clock.advance(31)
    again = store.due_outbox("console")
    assert again[0].attempts == 1
    store.mark_sent(again[0].id)
    assert store.outbox_depth() == {"telegram": 1}
    store.mark_failed(store.due_outbox("telegram")[0].id, "unauthorized")
    assert store.outbox_depth() == {}
    assert [h["kind"] for h in store.alert_history()] == ["firing", "firing"]


def test_routing_rows_and_audit(store: Store, clock: FixedClock) -> None:
    row = RoutingRow("c1", 60, 0, 60, 0, "drain", clock.now())
    change = WeightChange("c1", 60, 0, "rule channel_down: drain", clock.now(), "channel_down")
    store.save_routing([row], [change], ["console"])
    store.mark_applied("c1", 0)
    assert store.routing_states()["c1"].applied == 0
    assert store.weight_history() == [change]
    assert store.weight_history(since=clock.now() + timedelta(seconds=1)) == []
    assert store.due_outbox("console")[0].payload == {
        "type": "weight", "channel": "c1", "old": 60, "new": 0, "reason": "rule channel_down: drain",
        "rule": "channel_down", "actor": "paymon", "at": clock.now().isoformat(),
    }


def test_weight_change_counts_by_kind(store: Store, clock: FixedClock) -> None:
    at = clock.now()
    store.save_routing([], [WeightChange("c1", 60, 0, "drain", at, "channel_down"),
                            WeightChange("c1", 0, 15, "restore step 1/3", at),
                            WeightChange("c1", 15, 30, "restore step 2/3", at),
                            WeightChange("c2", 40, 20, "reduce", at, "low_success"),
                            WeightChange("c2", 20, 25, "edited in the shared config", at, None, "operator"),
                            WeightChange("c2", 25, 0, "set by cli:ops", at, None, "cli:ops")])
    assert store.weight_change_counts() == {("c1", "drain"): 1, ("c1", "restore"): 2, ("c2", "reduce"): 1,
                                            ("c2", "operator"): 2}


def test_silences_expire(store: Store, clock: FixedClock) -> None:
    sid = store.add_silence("c1", clock.now() + timedelta(hours=1), rule="low_success", reason="maintenance")
    assert [s.id for s in store.active_silences()] == [sid]
    clock.advance(timedelta(hours=1, seconds=1))
    assert store.active_silences() == []


def test_prune_keeps_recent_rows(store: Store, clock: FixedClock) -> None:
    store.add_probe_results([ProbeResult("c1", "query", "ok", 0.1, clock.now())])
    store.apply_events([ev(clock, "order_created", "A")])
    clock.advance(timedelta(days=20))
    store.add_probe_results([ProbeResult("c1", "query", "ok", 0.1, clock.now())])
    assert store.prune(probes=timedelta(days=14), orders=timedelta(days=90)) == (1, 0)
    assert len(store.probe_results()) == 1 and store.order_count() == 1


def test_unreachable_database_is_a_storage_error(clock: FixedClock) -> None:
    with pytest.raises(StorageError) as exc:
        Store.open("postgresql+psycopg://nobody:pw-not-shown@127.0.0.1:1/none", clock=clock)
    assert "pw-not-shown" not in str(exc.value)
