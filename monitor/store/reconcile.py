"""What reconciliation reads and writes: which unpaid orders are due a question, what the channels answered,
the orders the lost-order rule has to judge, the lost orders found (each once), held funds (each once, and their
release) and the audit trail of notify replays.

A pay time is stored only when the channel gave one (``orders.channel_paid_at``); when an order query says paid
without one, ``orders.paid_learned_at`` keeps when paymon learned it, a separate column that is never shown as a
pay time.

The store records decisions, it does not make them: which orders are lost, and which lost ones have recovered, is
:mod:`monitor.reconcile.lost` (pure), and :func:`monitor.reconcile.reporting.report_lost` reads, decides and writes.
Same rules as :class:`~monitor.store.store.Store`: every write is one transaction, and a lost order's record and
its notifications commit together, so a restart neither reports an order twice nor forgets to report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update

from monitor.clock import utc
from monitor.models import FUTURE_TOLERANCE, Candidate, CheckAnswer, HeldFunds, LostOrder, PaidOrder, Replay
from monitor.store import tables as t
from monitor.store.lost_batch import lost_batch_key, lost_batch_payload
from monitor.store.outbox import enqueue
from monitor.store.store import Store

# The value types used to be defined here; they stay importable from here.
__all__ = ["Candidate", "CheckAnswer", "HeldFunds", "LostOrder", "PaidOrder", "ReconcileStore", "Replay", "due"]


def due(created_at: datetime, checked_at: datetime | None, now: datetime, every: timedelta) -> bool:
    """Whether an order should be asked about again: never asked, or it has doubled its age since the last
    question (and at least ``every`` has passed). An order is asked about ~log2(horizon / older_than) times."""
    if checked_at is None:
        return True
    waited = now - checked_at
    return waited >= every and waited >= checked_at - created_at


class ReconcileStore:
    """Reconciliation's reads and writes on a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def _engine(self) -> Engine:
        return self.store.engine

    def candidates(self, channels: Iterable[str], *, now: datetime, older_than: timedelta, horizon: timedelta,
                   every: timedelta, per_channel: int) -> dict[str, list[Candidate]]:
        """Orders created in ``[now - horizon, now - older_than]`` with no verified callback, not paid in the
        shop and not yet known paid at the channel, that are due a question; newest first, at most
        ``per_channel`` per channel (a fresh lost order matters most: its buyer is waiting)."""
        o, c = t.orders, t.reconcile_checks
        ids = list(channels)
        if not ids:
            return {}
        q = (
            select(o.c.order_id, o.c.channel, o.c.created_at, c.c.checked_at, c.c.checks)
            .select_from(o.outerjoin(c, c.c.order_id == o.c.order_id))
            .where(
                o.c.channel.in_(ids),
                o.c.created_at >= now - horizon,
                o.c.created_at <= now - older_than,
                o.c.callback_at.is_(None),
                o.c.shop_paid_at.is_(None),
                o.c.channel_paid_at.is_(None),
                o.c.paid_learned_at.is_(None),
            )
            .order_by(o.c.created_at.desc())
        )
        out: dict[str, list[Candidate]] = {}
        with self._engine.connect() as conn:
            for r in conn.execute(q):
                if len(out.get(r.channel, ())) < per_channel and due(r.created_at, r.checked_at, now, every):
                    out.setdefault(r.channel, []).append(Candidate(r.order_id, r.channel, r.created_at, r.checks or 0))
        return out

    def record(self, channel: str, answers: Sequence[CheckAnswer], now: datetime) -> None:
        """Store the channel's answers: the check bookkeeping (its word and what it means), and for paid orders
        the channel's pay time (the earliest known) or, when it gave none, the time paymon learned it; a paid or
        held order keeps the channel's trade number."""
        c = t.reconcile_checks
        with self._engine.begin() as conn:
            for a in answers:
                values = {"checked_at": now, "status": a.status[:64], "state": a.state[:16]}
                n = conn.execute(update(c).where(c.c.order_id == a.order_id)
                                 .values(checks=c.c.checks + 1, **values)).rowcount
                if n == 0:
                    conn.execute(insert(c).values(order_id=a.order_id, channel=channel, checks=1, **values))
                if a.paid or a.state == "held":
                    self._mark(conn, a, now)

    @staticmethod
    def _mark(conn: Connection, a: CheckAnswer, now: datetime) -> None:
        """A paid order's pay time (only one the channel gave) or the time paymon learned of it; the trade number
        of a paid or held order."""
        o = t.orders
        row = conn.execute(select(o.c.channel_paid_at, o.c.paid_learned_at, o.c.trade_no)
                           .where(o.c.order_id == a.order_id)).first()
        if row is None:
            return
        values: dict[str, Any] = {}
        if a.paid and a.paid_at is not None and (row.channel_paid_at is None or a.paid_at < row.channel_paid_at):
            values["channel_paid_at"] = a.paid_at
        if a.paid and a.paid_at is None and row.paid_learned_at is None:
            values["paid_learned_at"] = now
        if a.trade_no and not row.trade_no:
            values["trade_no"] = a.trade_no[:200]
        if values:
            conn.execute(update(o).where(o.c.order_id == a.order_id).values(updated_at=now, **values))

    # -- lost orders -------------------------------------------------------------------------------------

    def unreported_paid(self, since: datetime) -> list[PaidOrder]:
        """The orders the lost-order rule has to judge: paid at the channel (its pay time, or else an unverified
        callback, or else the time paymon learned it) at or after ``since``, still neither a verified callback nor
        paid in the shop, and not recorded lost yet."""
        o, lo = t.orders, t.lost_orders
        q = (
            select(o)
            .select_from(o.outerjoin(lo, lo.c.order_id == o.c.order_id))
            .where(
                # Evidence at or after ``since`` was written after it too (less the future a timestamp may be
                # ahead): the indexed ``updated_at`` narrows the scan to recent rows instead of the whole retention.
                o.c.updated_at >= since - FUTURE_TOLERANCE,
                lo.c.order_id.is_(None),
                o.c.callback_at.is_(None),
                o.c.shop_paid_at.is_(None),
                or_(o.c.channel_paid_at >= since,
                    and_(o.c.channel_paid_at.is_(None), o.c.unverified_callback_at >= since),
                    and_(o.c.channel_paid_at.is_(None), o.c.unverified_callback_at.is_(None),
                         o.c.paid_learned_at >= since)),
            )
        )
        with self._engine.connect() as conn:
            return [_paid_order(r) for r in conn.execute(q)]

    def open_lost(self) -> list[tuple[LostOrder, PaidOrder]]:
        """Recorded lost orders not recovered yet, each with its order as it stands now (a lost order whose order
        row is gone, past the orders' retention, is left out)."""
        o, lo = t.orders, t.lost_orders
        order = [c.label(f"order_{c.name}") for c in o.c]
        q = select(lo, *order).select_from(lo.join(o, o.c.order_id == lo.c.order_id)).where(lo.c.recovered_at.is_(None))
        with self._engine.connect() as conn:
            return [(_lost_order(r), _paid_order(r, "order_")) for r in conn.execute(q)]

    def record_lost(self, found: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                    now: datetime) -> list[LostOrder]:
        """Record lost orders and queue a ``found`` notification per sink, in one transaction; returns those
        recorded (an order recorded before, by a concurrent cycle, is skipped: each is reported once). Several
        found at once share one notification listing them by channel (:mod:`monitor.store.lost_batch`)."""
        lo = t.lost_orders
        recorded: list[LostOrder] = []
        with self._engine.begin() as conn:
            for lost in found:
                if conn.execute(select(lo.c.order_id).where(lo.c.order_id == lost.order_id)).first() is not None:
                    continue
                conn.execute(insert(lo).values(
                    order_id=lost.order_id, channel=lost.channel, amount=lost.amount, trade_no=lost.trade_no,
                    channel_paid_at=lost.channel_paid_at, evidence=lost.evidence, found_at=lost.found_at,
                    paid_learned_at=lost.paid_learned_at,
                ))
                recorded.append(lost)
            if len(recorded) == 1:
                for sink in sinks:
                    enqueue(conn, sink, f"lost|{recorded[0].order_id}", recorded[0].payload("found", deadline), now)
            elif recorded:
                for sink in sinks:
                    enqueue(conn, sink, lost_batch_key(recorded), lost_batch_payload(recorded, deadline), now)
        return recorded

    def mark_recovered(self, recovered: Sequence[LostOrder], *, deadline: timedelta, sinks: Sequence[str],
                       now: datetime) -> list[LostOrder]:
        """Set ``recovered_at`` on recorded lost orders and queue a ``recovered`` notification per sink, in one
        transaction; returns those marked (one already marked recovered is skipped)."""
        lo = t.lost_orders
        marked: list[LostOrder] = []
        with self._engine.begin() as conn:
            for lost in recovered:
                stmt = (update(lo).where(lo.c.order_id == lost.order_id, lo.c.recovered_at.is_(None))
                        .values(recovered_at=lost.recovered_at or now))
                if conn.execute(stmt).rowcount == 0:
                    continue
                for sink in sinks:
                    enqueue(conn, sink, f"lost-recovered|{lost.order_id}", lost.payload("recovered", deadline), now)
                marked.append(lost)
        return marked

    def lost_orders(self, *, since: datetime | None = None, open_only: bool = False, unreplayed: bool = False,
                    limit: int = 100) -> list[LostOrder]:
        """Recorded lost orders, newest first; ``unreplayed``: only those with no notify replay (attempted) yet."""
        lo, r = t.lost_orders, t.notify_replays
        q = select(lo).order_by(lo.c.found_at.desc(), lo.c.order_id).limit(limit)
        if since is not None:
            q = q.where(lo.c.found_at >= since)
        if open_only:
            q = q.where(lo.c.recovered_at.is_(None))
        if unreplayed:
            q = q.where(~select(r.c.id).where(r.c.order_id == lo.c.order_id).exists())
        with self._engine.connect() as conn:
            return [_lost_order(r) for r in conn.execute(q)]

    # -- held funds -------------------------------------------------------------------------------------

    def unreported_held(self) -> list[HeldFunds]:
        """Orders whose last answer was ``held``, not completed in the shop and not recorded as held funds yet;
        ``seen_at`` is the time of that answer."""
        o, c, h = t.orders, t.reconcile_checks, t.held_funds
        q = (
            select(o.c.order_id, o.c.channel, o.c.amount, o.c.trade_no, c.c.status, c.c.checked_at)
            .select_from(o.join(c, c.c.order_id == o.c.order_id).outerjoin(h, h.c.order_id == o.c.order_id))
            .where(c.c.state == "held", h.c.order_id.is_(None), o.c.callback_at.is_(None),
                   o.c.shop_paid_at.is_(None))
        )
        with self._engine.connect() as conn:
            return [HeldFunds(r.order_id, r.channel, r.amount, r.trade_no, r.status, utc(r.checked_at))
                    for r in conn.execute(q)]

    def open_held(self) -> list[tuple[HeldFunds, str | None, bool]]:
        """Recorded held funds not released yet, each with what the channel last said (``state``) and whether
        the shop has completed the order since."""
        o, c, h = t.orders, t.reconcile_checks, t.held_funds
        q = (
            select(h, c.c.state.label("last_state"), o.c.callback_at.label("order_callback_at"),
                   o.c.shop_paid_at.label("order_shop_paid_at"))
            .select_from(h.outerjoin(c, c.c.order_id == h.c.order_id).outerjoin(o, o.c.order_id == h.c.order_id))
            .where(h.c.released_at.is_(None))
        )
        with self._engine.connect() as conn:
            return [(_held(r), r.last_state, r.order_callback_at is not None or r.order_shop_paid_at is not None)
                    for r in conn.execute(q)]

    def record_held(self, found: Sequence[HeldFunds], *, sinks: Sequence[str], now: datetime) -> list[HeldFunds]:
        """Record held funds and queue a ``held`` notification per sink, in one transaction; returns those recorded
        (one recorded before is skipped: each is reported once)."""
        h = t.held_funds
        recorded: list[HeldFunds] = []
        with self._engine.begin() as conn:
            for held in found:
                if conn.execute(select(h.c.order_id).where(h.c.order_id == held.order_id)).first() is not None:
                    continue
                conn.execute(insert(h).values(
                    order_id=held.order_id, channel=held.channel, amount=held.amount, trade_no=held.trade_no,
                    status=held.status[:64], seen_at=held.seen_at,
                ))
                for sink in sinks:
                    enqueue(conn, sink, f"held|{held.order_id}", held.payload("held"), now)
                recorded.append(held)
        return recorded

    def mark_released(self, released: Sequence[HeldFunds], *, sinks: Sequence[str],
                      now: datetime) -> list[HeldFunds]:
        """Set ``released_at`` and ``release`` on recorded held funds and queue a ``released`` notification per
        sink, in one transaction; returns those marked (one already released is skipped)."""
        h = t.held_funds
        marked: list[HeldFunds] = []
        with self._engine.begin() as conn:
            for held in released:
                stmt = (update(h).where(h.c.order_id == held.order_id, h.c.released_at.is_(None))
                        .values(released_at=held.released_at or now, release=(held.release or "")[:16]))
                if conn.execute(stmt).rowcount == 0:
                    continue
                for sink in sinks:
                    enqueue(conn, sink, f"held-released|{held.order_id}", held.payload("released"), now)
                marked.append(held)
        return marked

    def held_funds(self, *, open_only: bool = False, limit: int = 100) -> list[HeldFunds]:
        """Recorded held funds, newest first; ``open_only``: those not released."""
        h = t.held_funds
        q = select(h).order_by(h.c.seen_at.desc(), h.c.order_id).limit(limit)
        if open_only:
            q = q.where(h.c.released_at.is_(None))
        with self._engine.connect() as conn:
            return [_held(r) for r in conn.execute(q)]

    def open_held_counts(self) -> dict[str, int]:
        """How many held funds are open per channel (``paymon_held_funds``)."""
        h = t.held_funds
        q = select(h.c.channel, func.count()).where(h.c.released_at.is_(None)).group_by(h.c.channel)
        with self._engine.connect() as conn:
            return {str(channel): int(n) for channel, n in conn.execute(q)}

    # -- notify replays ----------------------------------------------------------------------------------

    def begin_replay(self, order_id: str, channel: str, now: datetime) -> bool:
        """Claim the one replay an order gets; False when it was already replayed (or attempted)."""
        r = t.notify_replays
        with self._engine.begin() as conn:
            if conn.execute(select(r.c.id).where(r.c.order_id == order_id)).first() is not None:
                return False
            conn.execute(insert(r).values(order_id=order_id, channel=channel, at=now, detail="sending"))
        return True

    def finish_replay(self, order_id: str, status_code: int | None, acknowledged: bool, detail: str) -> None:
        r = t.notify_replays
        with self._engine.begin() as conn:
            conn.execute(update(r).where(r.c.order_id == order_id).values(
                status_code=status_code, acknowledged=acknowledged, detail=detail[:500]))

    def replays(self, *, limit: int = 100) -> list[Replay]:
        r = t.notify_replays
        q = select(r).order_by(r.c.at.desc(), r.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [Replay(x.order_id, x.channel, x.at, x.status_code, x.acknowledged, x.detail)
                    for x in conn.execute(q)]

    def prune(self, before: datetime) -> int:
        """Forget checks, lost orders and released held funds older than ``before`` (the orders' retention); open
        held funds stay until released (an operator must still look), replays stay as audit."""
        with self._engine.begin() as conn:
            n = conn.execute(delete(t.reconcile_checks).where(t.reconcile_checks.c.checked_at < before)).rowcount
            n += conn.execute(delete(t.lost_orders).where(t.lost_orders.c.found_at < before)).rowcount
            n += conn.execute(delete(t.held_funds).where(t.held_funds.c.seen_at < before,
                                                         t.held_funds.c.released_at.is_not(None))).rowcount
        return int(n)


def _paid_order(r: Any, prefix: str = "") -> PaidOrder:
    """An order row (its columns named ``prefix`` + column) as the lost-order rule reads it."""
    m = r._mapping
    at = {c: _utc(m[prefix + c]) for c in ("channel_paid_at", "unverified_callback_at", "callback_at", "shop_paid_at",
                                           "paid_learned_at")}
    return PaidOrder(m[prefix + "order_id"], m[prefix + "channel"], m[prefix + "amount"], m[prefix + "trade_no"], **at)


def _lost_order(r: Any) -> LostOrder:
    return LostOrder(r.order_id, r.channel, r.amount, r.trade_no, r.channel_paid_at, r.evidence, r.found_at,
                     r.recovered_at, r.paid_learned_at)


def _held(r: Any) -> HeldFunds:
    return HeldFunds(r.order_id, r.channel, r.amount, r.trade_no, r.status, r.seen_at, r.released_at, r.release)


def _utc(at: datetime | None) -> datetime | None:
    return None if at is None else utc(at)
