"""Reconciliation storage on SQLite, PostgreSQL and MariaDB: due orders, back-off, answers, lost orders reported
once (and their recovery), the replay audit and retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from monitor.clock import FixedClock
from monitor.models import LostOrder, OrderEvent
from monitor.reconcile.reporting import report_lost
from monitor.store import Store
from monitor.store import tables as t
from monitor.store.reconcile import CheckAnswer, ReconcileStore, due

MIN = timedelta(minutes=1)


def created(store: Store, clock: FixedClock, order: str, minutes_ago: float, channel: str = "c1") -> None:
    at = clock.now() - timedelta(minutes=minutes_ago)
    store.apply_events([OrderEvent(ts=at, event="order_created", order_id=order, channel=channel,
                                   amount=Decimal("10.00"))])


def event(store: Store, clock: FixedClock, kind: str, order: str, minutes_ago: float = 0, **kw: object) -> None:
    at = clock.now() - timedelta(minutes=minutes_ago)
    store.apply_events([OrderEvent(ts=at, event=kind, order_id=order, channel="c1", **kw)])  # type: ignore[arg-type]


def ask(rs: ReconcileStore, clock: FixedClock, **kw: object) -> dict[str, list[str]]:
    args: dict[str, object] = {"now": clock.now(), "older_than": 5 * MIN, "horizon": timedelta(hours=24),
                               "every": MIN, "per_channel": 100}
    args.update(kw)
    got = rs.candidates(["c1", "c2"], **args)  # type: ignore[arg-type]
    return {ch: [c.order_id for c in rows] for ch, rows in got.items()}


def test_due_doubles_the_wait_with_age(clock: FixedClock) -> None:
    now = clock.now()
    assert due(now - 10 * MIN, None, now, MIN)
    # asked at age 5 min: asked again at age 10 min, not before
    assert not due(now - 9 * MIN, now - 4 * MIN, now, MIN)
    assert due(now - 10 * MIN, now - 5 * MIN, now, MIN)
    # never more often than `every`
    assert not due(now - 30 * timedelta(seconds=1), now - 20 * timedelta(seconds=1), now, MIN)


def test_candidates_are_unpaid_orders_between_older_than_and_horizon(store: Store, clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    created(store, clock, "FRESH", 2)            # younger than older_than
    created(store, clock, "DUE1", 6)
    created(store, clock, "DUE2", 60)
    created(store, clock, "ANCIENT", 25 * 60)    # past the horizon
    created(store, clock, "CALLBACK", 10)
    event(store, clock, "callback_received", "CALLBACK", 9, verified=True)
    created(store, clock, "SHOPPAID", 10)
    event(store, clock, "order_paid", "SHOPPAID", 9)
    created(store, clock, "UNVERIFIED", 10)
    event(store, clock, "callback_received", "UNVERIFIED", 9, verified=False)
    created(store, clock, "OTHER", 7, channel="c2")
    created(store, clock, "ELSEWHERE", 7, channel="c9")  # a channel not reconciled
    assert ask(rs, clock) == {"c1": ["DUE1", "UNVERIFIED", "DUE2"], "c2": ["OTHER"]}  # newest first
    assert ask(rs, clock, per_channel=1) == {"c1": ["DUE1"], "c2": ["OTHER"]}
    assert rs.candidates([], now=clock.now(), older_than=MIN, horizon=MIN, every=MIN, per_channel=1) == {}


def test_answers_back_off_and_paid_orders_leave_the_list(store: Store, clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    created(store, clock, "A", 6)
    created(store, clock, "B", 6)
    paid_at = clock.now() - 4 * MIN
    rs.record("c1", [CheckAnswer("A", "0", "unpaid"), CheckAnswer("B", "1", "paid", paid_at, "T-B")], clock.now())
    assert ask(rs, clock) == {}                  # A was just asked, B is paid at the channel
    clock.advance(6 * MIN)                       # A is 12 min old, asked at 6: due again
    assert ask(rs, clock) == {"c1": ["A"]}
    rs.record("c1", [CheckAnswer("A", "0", "unpaid")], clock.now())
    [cand] = rs.candidates(["c1"], now=clock.now() + 12 * MIN, older_than=5 * MIN, horizon=timedelta(hours=1),
                           every=MIN, per_channel=9)["c1"]
    assert cand.checks == 2
    rows = store.orders_frame(clock.now() - timedelta(hours=1)).set_index("order_id")
    assert rows.loc["B", "channel_paid_at"] == paid_at
    assert rows.loc["B", "trade_no"] == "T-B"
    # an earlier pay time wins, a later one and a second trade_no do not
    rs.record("c1", [CheckAnswer("B", "1", "paid", paid_at + MIN, "T-OTHER")], clock.now())
    rs.record("c1", [CheckAnswer("B", "1", "paid", None, None)], clock.now())
    rows = store.orders_frame(clock.now() - timedelta(hours=1)).set_index("order_id")
    assert (rows.loc["B", "channel_paid_at"], rows.loc["B", "trade_no"]) == (paid_at, "T-B")
    # an answer about an order the store does not have changes no order
    rs.record("c1", [CheckAnswer("GHOST", "1", "paid", paid_at, "T")], clock.now())
    assert store.order_count() == 2


def test_paid_without_a_pay_time_keeps_no_pay_time_only_when_paymon_learned_it(store: Store,
                                                                                 clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    created(store, clock, "A", 6)
    learned = clock.now()
    rs.record("c1", [CheckAnswer("A", "TRADE_SUCCESS", "paid")], learned)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.orders.c.channel_paid_at, t.orders.c.paid_learned_at)).one()
    assert (row.channel_paid_at, row.paid_learned_at) == (None, learned)   # never a made-up pay time
    assert ask(rs, clock, now=clock.now() + timedelta(hours=1)) == {}        # known paid: not asked again
    clock.advance(MIN)
    rs.record("c1", [CheckAnswer("A", "TRADE_SUCCESS", "paid")], clock.now())  # the first learned time stays
    with store.engine.connect() as conn:
        assert conn.execute(select(t.orders.c.paid_learned_at)).scalar_one() == learned
    # past the deadline from the time paymon learned it, it is lost: with no pay time, labelled as learned
    clock.advance(5 * MIN)
    found, _ = report_lost(rs, now=clock.now(), deadline=5 * MIN, since=clock.now() - timedelta(hours=1),
                           sinks=["console"])
    assert [(lo.order_id, lo.channel_paid_at, lo.paid_learned_at, lo.evidence) for lo in found] == [
        ("A", None, learned, "reconcile")]
    [item] = store.due_outbox("console")
    assert (item.payload["channel_paid_at"], item.payload["paid_learned_at"]) == (None, learned.isoformat())
    [stored] = rs.lost_orders()
    assert (stored.channel_paid_at, stored.paid_learned_at) == (None, learned)


def test_lost_orders_are_reported_once_after_the_deadline(store: Store, clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    deadline, since = 5 * MIN, clock.now() - timedelta(hours=24)
    created(store, clock, "LOST", 10)
    created(store, clock, "SLOW", 10)
    created(store, clock, "UNV", 10)
    created(store, clock, "OLD", 30 * 60)
    rs.record("c1", [CheckAnswer("LOST", "1", "paid", clock.now() - 3 * MIN, "T1"),
                     CheckAnswer("SLOW", "1", "paid", clock.now() - 3 * MIN, "T2"),
                     CheckAnswer("OLD", "1", "paid", clock.now() - 29 * 60 * MIN, "T3")], clock.now())
    event(store, clock, "callback_received", "UNV", 3, verified=False)
    assert report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"]) == ([], [])
    event(store, clock, "callback_received", "SLOW", 0, verified=True)   # in time: not lost
    clock.advance(2 * MIN)
    # pay times in whole seconds stand for the whole second: the deadline runs from its end
    assert report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"]) == ([], [])
    clock.advance(1)
    found, recovered = report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"])
    assert sorted((lo.order_id, lo.evidence, lo.trade_no) for lo in found) == [
        ("LOST", "reconcile", "T1"), ("UNV", "unverified_callback", None)]
    assert recovered == []
    assert report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"]) == ([], [])  # once
    [item] = store.due_outbox("console")  # found together: one notification lists both
    assert (item.payload["type"], item.payload["kind"], item.payload["count"]) == ("lost_orders", "found", 2)
    lost = {o["order_id"]: o for group in item.payload["channels"] for o in group["orders"]}
    assert lost["LOST"]["amount"] == "10.00" and lost["LOST"]["deadline_s"] == 300.0
    assert sorted(lo.order_id for lo in rs.lost_orders(open_only=True)) == ["LOST", "UNV"]
    # the shop completes LOST (a replayed notify, a manual 补单): reported as recovered, once
    clock.advance(MIN)
    event(store, clock, "order_paid", "LOST", 0)
    found, recovered = report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"])
    assert found == [] and [lo.order_id for lo in recovered] == ["LOST"]
    assert recovered[0].recovered_at == clock.now()
    assert report_lost(rs, now=clock.now(), deadline=deadline, since=since, sinks=["console"]) == ([], [])
    assert [lo.order_id for lo in rs.lost_orders(open_only=True)] == ["UNV"]
    assert {lo.order_id for lo in rs.lost_orders()} == {"LOST", "UNV"}
    kinds = [(i.payload["type"], i.payload["kind"], i.payload.get("order_id")) for i in store.due_outbox("console")]
    assert kinds == [("lost_orders", "found", None), ("lost_order", "recovered", "LOST")]


def test_replays_are_claimed_once_and_audited(store: Store, clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    assert rs.begin_replay("A", "c1", clock.now())
    assert not rs.begin_replay("A", "c1", clock.now())   # a second claim (a crash, a restart) is refused
    [r] = rs.replays()
    assert (r.order_id, r.status_code, r.acknowledged, r.detail) == ("A", None, None, "sending")
    rs.finish_replay("A", 200, True, "HTTP 200 success")
    [r] = rs.replays()
    assert (r.status_code, r.acknowledged, r.detail) == (200, True, "HTTP 200 success")


def test_prune_forgets_old_checks_and_lost_orders(store: Store, clock: FixedClock) -> None:
    rs = ReconcileStore(store)
    created(store, clock, "A", 20)
    rs.record("c1", [CheckAnswer("A", "1", "paid", clock.now() - 19 * MIN)], clock.now())
    report_lost(rs, now=clock.now(), deadline=5 * MIN, since=clock.now() - timedelta(hours=1), sinks=[])
    assert rs.prune(clock.now() - MIN) == 0
    assert rs.prune(clock.now() + MIN) == 2
    assert rs.lost_orders() == []


def test_lost_order_reads_and_writes_record_and_announce_each_order_once(store: Store, clock: FixedClock) -> None:
    """The store's side of a report: what it hands the rule, and writes that skip what is already recorded."""
    rs = ReconcileStore(store)
    since = clock.now() - timedelta(hours=1)
    created(store, clock, "A", 20)
    created(store, clock, "B", 20)
    created(store, clock, "DONE", 20)
    rs.record("c1", [CheckAnswer("A", "1", "paid", clock.now() - 19 * MIN, "T-A"),
                     CheckAnswer("DONE", "1", "paid", clock.now() - 19 * MIN)], clock.now())
    event(store, clock, "callback_received", "B", 18, verified=False)
    event(store, clock, "order_paid", "DONE", 1)
    got = {p.order_id: p for p in rs.unreported_paid(since)}
    assert sorted(got) == ["A", "B"]  # DONE is paid in the shop: nothing to judge
    assert (got["A"].channel_paid_at, got["A"].trade_no, got["A"].amount) == (clock.now() - 19 * MIN, "T-A", "10.00")
    assert (got["B"].channel_paid_at, got["B"].unverified_callback_at) == (None, clock.now() - 18 * MIN)
    assert rs.unreported_paid(clock.now() - 10 * MIN) == []  # evidence before ``since``
    lost = LostOrder("A", "c1", "10.00", "T-A", clock.now() - 19 * MIN, "reconcile", clock.now())
    assert rs.record_lost([lost], deadline=5 * MIN, sinks=["console"], now=clock.now()) == [lost]
    assert rs.record_lost([lost], deadline=5 * MIN, sinks=["console"], now=clock.now()) == []  # once
    assert [p.order_id for p in rs.unreported_paid(since)] == ["B"]
    assert [i.payload["order_id"] for i in store.due_outbox("console")] == ["A"]
    [(open_a, order_a)] = rs.open_lost()
    assert open_a == lost and not order_a.completed
    event(store, clock, "callback_received", "A", 0, verified=True)
    [(_, order_a)] = rs.open_lost()
    assert order_a.completed and order_a.callback_at == clock.now()
    back = replace(lost, recovered_at=clock.now())
    assert rs.mark_recovered([back], deadline=5 * MIN, sinks=["console"], now=clock.now()) == [back]
    assert rs.mark_recovered([back], deadline=5 * MIN, sinks=["console"], now=clock.now()) == []  # once
    assert rs.open_lost() == []
    assert [lo.recovered_at for lo in rs.lost_orders()] == [clock.now()]
    assert sorted(i.payload["kind"] for i in store.due_outbox("console")) == ["found", "recovered"]
