"""``Store.apply_events`` on SQLite, PostgreSQL and MariaDB: it folds events exactly as ``merge_event`` does, counts
exactly, converges whatever the order, batching and repetition, and writes only the columns it owns."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from monitor.clock import FixedClock
from monitor.models import OrderEvent
from monitor.store import Checkpoint, Store
from monitor.store import tables as t
from monitor.store.orders import ORDER_COLUMNS, _sqlite_time, _upsert_sql, merge_event

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def rows(store: Store, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Stored orders whose id starts with ``prefix``, by id, without ``updated_at`` and ``paid_learned_at`` (the
    reconciler's column: ingest never writes it)."""
    o = t.orders
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(select(o).where(o.c.order_id.startswith(prefix))):
            row = dict(r._mapping)
            del row["updated_at"]
            assert row.pop("paid_learned_at") is None
            out[row.pop("order_id")] = row
    return out


def reference(events: list[OrderEvent]) -> tuple[int, dict[str, dict[str, Any]]]:
    """``merge_event`` folded over the events in order: how many changed a row, and the rows."""
    folded: dict[str, dict[str, Any]] = {}
    accepted = 0
    for e in events:
        row = folded.setdefault(e.order_id, {"channel": e.channel})
        accepted += merge_event(row, e)
    columns = ("channel", "method", "amount", "trade_no", *ORDER_COLUMNS)
    return accepted, {oid: {c: row.get(c) for c in columns} for oid, row in folded.items()}


def ev(kind: str, order: str, minutes: float, **kw: Any) -> OrderEvent:
    return OrderEvent(T0 + timedelta(minutes=minutes), kind, order, "c1", **kw)


def test_a_batch_folds_like_merge_event_on_every_database(store: Store) -> None:
    first = [ev("order_created", "A", 5, amount=Decimal("10.00")),
             ev("callback_received", "A", 9, verified=True, trade_no="T1", paid_at=T0)]
    events = [
        ev("order_created", "A", 3, amount=Decimal("99.00"), method="wxpay"),  # earlier; amount stays, method fills
        ev("callback_received", "A", 8, verified=True, trade_no="T2", paid_at=T0 - timedelta(seconds=1)),
        ev("callback_received", "A", 7, verified=False),
        ev("callback_received", "A", 7, verified=False),  # the same again: a duplicate
        ev("order_paid", "A", 9.5),
        ev("order_created", "B", 1, method=""),
        ev("order_created", "B", 2),  # later: a duplicate
        ev("order_created", "B", 0.5, method="alipay"),
    ]
    store.apply_events(first)
    r = store.apply_events(events, checkpoint=Checkpoint("src", "1:2", 10))
    assert (r.accepted, r.duplicate, r.rejected) == (6, 2, 0)
    assert r.accepted == reference(first + events)[0] - reference(first)[0]
    stored = rows(store)
    assert stored == reference(first + events)[1]
    a = stored["A"]
    assert a["created_at"] == T0 + timedelta(minutes=3) and a["amount"] == "10.00" and a["method"] == "wxpay"
    assert a["callback_at"] == T0 + timedelta(minutes=8) and a["trade_no"] == "T1"
    assert a["channel_paid_at"] == T0 - timedelta(seconds=1)
    assert a["unverified_callback_at"] == T0 + timedelta(minutes=7)
    assert stored["B"]["created_at"] == T0 + timedelta(seconds=30) and stored["B"]["method"] == "alipay"
    assert store.checkpoint("src") == Checkpoint("src", "1:2", 10)


def test_rejected_counts_pass_through_and_an_empty_batch_moves_the_checkpoint(store: Store) -> None:
    r = store.apply_events([], checkpoint=Checkpoint("src", "1:2", 7), rejected=2, reasons={"bad_json": 2})
    assert (r.accepted, r.duplicate, r.rejected, r.reasons) == (0, 0, 2, {"bad_json": 2})
    assert store.checkpoint("src") == Checkpoint("src", "1:2", 7) and store.order_count() == 0


def test_many_orders_across_chunks(store: Store) -> None:
    created = [ev("order_created", f"M{i:04d}", i / 100) for i in range(1234)]
    assert store.apply_events(created).accepted == 1234
    paid = [ev("order_paid", f"M{i:04d}", 30) for i in range(1234)]
    r = store.apply_events(paid + created)
    assert (r.accepted, r.duplicate) == (1234, 1234)
    assert store.order_count() == 1234
    assert all(row["shop_paid_at"] == T0 + timedelta(minutes=30) for row in rows(store).values())


def test_only_its_own_columns_are_written(store: Store) -> None:
    """A column added to ``orders`` later (by another feature) is never reset by ingestion."""
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE orders ADD COLUMN note VARCHAR(20)"))
    store.apply_events([ev("order_created", "A", 0)])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE orders SET note = 'keep me' WHERE order_id = 'A'"))
    store.apply_events([ev("order_paid", "A", 5), ev("order_created", "A", -1), ev("order_created", "B", 0)])
    with store.engine.connect() as conn:
        notes = dict(conn.execute(text("SELECT order_id, note FROM orders ORDER BY order_id")).all())
    assert notes == {"A": "keep me", "B": None}


def test_the_upsert_never_moves_a_time_later_nor_replaces_text(store: Store, clock: FixedClock) -> None:
    """What a writer that got in between the read and the write would see: the SQL keeps the stored value where
    the merge rules say so, so a stale row written over a newer one loses nothing."""
    store.apply_events([ev("order_created", "A", 0, method="alipay", amount=Decimal("1.00")), ev("order_paid", "A", 2)])
    stale = {"order_id": "A", "channel": "c1", "method": "wxpay", "amount": "2.00", "trade_no": "T9",
             "created_at": T0 + timedelta(minutes=1), "shop_paid_at": None, "delivered_at": T0 + timedelta(minutes=3)}
    with store.engine.begin() as conn:
        from monitor.store.orders import _ROW_COLUMNS, _stored_time

        stored = _stored_time(conn)
        values = [stale.get(c) for c in _ROW_COLUMNS]
        values = [stored(v) if isinstance(v, datetime) else v for v in values]
        conn.exec_driver_sql(_upsert_sql(conn), [("A", *values, stored(clock.now()))])
    a = rows(store)["A"]
    assert (a["method"], a["amount"], a["trade_no"]) == ("alipay", "1.00", "T9")
    assert a["created_at"] == T0 and a["shop_paid_at"] == T0 + timedelta(minutes=2)
    assert a["delivered_at"] == T0 + timedelta(minutes=3)


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.apply_events([OrderEvent(datetime(2026, 1, 1), "order_created", "A", "c1")])
    assert store.order_count() == 0


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 26, 3, 0, tzinfo=UTC),
    datetime(2026, 11, 26, 3, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 11, 26, 11, 0, 59, 999999, tzinfo=timezone(timedelta(hours=8))),
    datetime(1, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
])
def test_sqlite_text_is_what_sqlalchemy_writes(sqlite_store: Store, when: datetime) -> None:
    dialect = sqlite_store.engine.dialect
    process = t.orders.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert _sqlite_time(when) == process(when)


_KINDS = ["order_created", "pay_redirect", "return_received", "callback_received", "order_paid", "order_delivered",
          "order_expired"]
_minutes = st.integers(0, 6).map(lambda m: T0 + timedelta(minutes=m))
#: Any events at all, text fields disagreeing between events of one order included.
_any_event = st.builds(
    OrderEvent,
    ts=_minutes,
    event=st.sampled_from(_KINDS),
    order_id=st.sampled_from(["a", "b", "c"]),
    channel=st.sampled_from(["c1", "c2"]),
    method=st.sampled_from([None, "", "alipay", "wxpay"]),
    amount=st.sampled_from([None, Decimal("1.00"), Decimal("2.50")]),
    trade_no=st.sampled_from([None, "", "T1", "T2"]),
    paid_at=st.sampled_from([None, T0, T0 + timedelta(minutes=3)]),
    verified=st.sampled_from([None, True, False]),
)
#: What one real order says about itself, whichever of its events says it.
_ORDERS = {"a": ("c1", "alipay", Decimal("1.00"), "T1"), "b": ("c2", "wxpay", Decimal("2.50"), "T2"),
           "c": ("c1", "usdt", Decimal("9.90"), "T3")}


@st.composite
def _order_event(draw: st.DrawFn) -> OrderEvent:
    oid = draw(st.sampled_from(sorted(_ORDERS)))
    channel, method, amount, trade_no = _ORDERS[oid]
    says = st.booleans()
    return OrderEvent(draw(_minutes), draw(st.sampled_from(_KINDS)), oid, channel,
                      method if draw(says) else None, amount if draw(says) else None,
                      trade_no if draw(says) else None, draw(st.sampled_from([None, T0, T0 + timedelta(minutes=3)])),
                      draw(st.sampled_from([None, True, False])))


_run = itertools.count()


def _prefixed(events: list[OrderEvent]) -> tuple[str, list[OrderEvent]]:
    """The events on order ids of their own, so examples sharing one database do not meet."""
    prefix = f"r{next(_run)}-"
    return prefix, [OrderEvent(e.ts, e.event, prefix + e.order_id, e.channel, e.method, e.amount, e.trade_no,
                               e.paid_at, e.verified) for e in events]


def _apply_in_batches(store: Store, events: list[OrderEvent], cuts: list[int]) -> tuple[int, int]:
    accepted = duplicate = 0
    for start, end in itertools.pairwise([0, *sorted(cuts), len(events)]):
        r = store.apply_events(events[start:end])
        accepted, duplicate = accepted + r.accepted, duplicate + r.duplicate
    return accepted, duplicate


_settings = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(events=st.lists(_any_event, max_size=25), data=st.data())
def test_batches_count_and_fold_exactly_like_merge_event(store: Store, events: list[OrderEvent],
                                                         data: st.DataObject) -> None:
    prefix, events = _prefixed(events)
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=4))
    accepted, duplicate = _apply_in_batches(store, events, cuts)
    expected_accepted, expected_rows = reference(events)
    assert (accepted, duplicate) == (expected_accepted, len(events) - expected_accepted)
    assert rows(store, prefix) == expected_rows


@_settings
@given(events=st.lists(_order_event(), min_size=1, max_size=20), data=st.data())
def test_shuffled_and_repeated_events_converge_on_the_same_rows(store: Store, events: list[OrderEvent],
                                                                data: st.DataObject) -> None:
    prefix, events = _prefixed(events)
    replay = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=10))))
    accepted, duplicate = _apply_in_batches(store, replay, data.draw(st.lists(st.integers(0, len(replay)),
                                                                              max_size=4)))
    assert accepted + duplicate == len(replay) and accepted <= len(events)
    assert rows(store, prefix) == reference(events)[1]
    again = store.apply_events(replay)  # everything read once more: nothing changes, nothing counts twice
    assert (again.accepted, again.duplicate) == (0, len(replay))
    assert rows(store, prefix) == reference(events)[1]
