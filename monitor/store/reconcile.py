"""What reconciliation reads and writes: which unpaid orders are due a question, what the channels answered,
the lost orders found (each once) and the audit trail of notify replays.

Same rules as :class:`~monitor.store.store.Store`: every write is one transaction, and a lost order's record and
its notifications commit together, so a restart neither reports an order twice nor forgets to report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, or_, select, update

from monitor.clock import utc
from monitor.ingest.events import FUTURE_TOLERANCE
from monitor.metrics.stats import lost_deadline
from monitor.store import tables as t
from monitor.store.store import Store

__all__ = ["Candidate", "CheckAnswer", "LostOrder", "ReconcileStore", "Replay", "due"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order the shop still thinks unpaid, due a question to its channel."""

    order_id: str
    channel: str
    created_at: datetime
    checks: int = 0


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """What the channel said about one order (``status`` is its own word; ``paid_at`` None = not paid / not
    known)."""

    order_id: str
    status: str
    paid: bool
    paid_at: datetime | None = None
    trade_no: str | None = None


@dataclass(frozen=True, slots=True)
class LostOrder:
    """A lost order (掉单): the channel has the money, the shop has no verified callback past the deadline.

    ``evidence`` says how paymon knows it was paid: ``reconcile`` (the channel's order query) or
    ``unverified_callback`` (a callback arrived but did not verify)."""

    order_id: str
    channel: str
    amount: str | None
    trade_no: str | None
    channel_paid_at: datetime | None
    evidence: str
    found_at: datetime
    recovered_at: datetime | None = None

    def payload(self, kind: str, deadline: timedelta) -> dict[str, Any]:
        """The outbox JSON for this lost order: ``kind`` ``found`` or ``recovered``."""
        return {
            "type": "lost_order",
            "kind": kind,
            "order_id": self.order_id,
            "channel": self.channel,
            "amount": self.amount,
            "trade_no": self.trade_no,
            "channel_paid_at": None if self.channel_paid_at is None else self.channel_paid_at.isoformat(),
            "evidence": self.evidence,
            "deadline_s": deadline.total_seconds(),
            "at": (self.recovered_at if kind == "recovered" and self.recovered_at else self.found_at).isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Replay:
    """One audited notify replay. ``status_code``/``acknowledged`` are None while it is being sent (or when a
    crash cut it short: it is never sent again by itself)."""

    order_id: str
    channel: str
    at: datetime
    status_code: int | None
    acknowledged: bool | None
    detail: str


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
        """Store the channel's answers: the check bookkeeping, and for paid orders the channel's pay time (the
        earliest known; the time of the question when the channel gives none) and trade number."""
        c = t.reconcile_checks
        with self._engine.begin() as conn:
            for a in answers:
                status = a.status[:64]
                n = conn.execute(update(c).where(c.c.order_id == a.order_id)
                                 .values(checked_at=now, checks=c.c.checks + 1, status=status)).rowcount
                if n == 0:
                    conn.execute(insert(c).values(order_id=a.order_id, channel=channel, checked_at=now, checks=1,
                                                  status=status))
                if a.paid:
                    self._mark_paid(conn, a, now)

    @staticmethod
    def _mark_paid(conn: Connection, a: CheckAnswer, now: datetime) -> None:
        o = t.orders
        row = conn.execute(select(o.c.channel_paid_at, o.c.trade_no).where(o.c.order_id == a.order_id)).first()
        if row is None:
            return
        paid_at = a.paid_at or now
        values: dict[str, Any] = {"updated_at": now}
        if row.channel_paid_at is None or paid_at < row.channel_paid_at:
            values["channel_paid_at"] = paid_at
        if a.trade_no and not row.trade_no:
            values["trade_no"] = a.trade_no[:200]
        conn.execute(update(o).where(o.c.order_id == a.order_id).values(**values))

    def report(self, *, now: datetime, deadline: timedelta, since: datetime, sinks: Sequence[str]) -> tuple[
        list[LostOrder], list[LostOrder]
    ]:
        """Record and enqueue every newly lost order, and every recorded one the shop has since completed.

        Lost: paid at the channel (its pay time, or an unverified callback) at or after ``since``, the deadline
        passed, and still neither a verified callback nor paid in the shop. Returns (found, recovered).
        """
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
                    and_(o.c.channel_paid_at.is_(None), o.c.unverified_callback_at >= since)),
            )
        )
        found: list[LostOrder] = []
        recovered: list[LostOrder] = []
        with self._engine.begin() as conn:
            for r in conn.execute(q):
                if lost_deadline(utc(r.channel_paid_at or r.unverified_callback_at), deadline) > now:
                    continue
                found.append(LostOrder(
                    r.order_id, r.channel, r.amount, r.trade_no, r.channel_paid_at,
                    "reconcile" if r.channel_paid_at is not None else "unverified_callback", now,
                ))
            for lost in found:
                conn.execute(insert(lo).values(
                    order_id=lost.order_id, channel=lost.channel, amount=lost.amount, trade_no=lost.trade_no,
                    channel_paid_at=lost.channel_paid_at, evidence=lost.evidence, found_at=now,
                ))
                for sink in sinks:
                    self.store._enqueue(conn, sink, f"lost|{lost.order_id}", lost.payload("found", deadline), now)
            back = (
                select(lo)
                .select_from(lo.join(o, o.c.order_id == lo.c.order_id))
                .where(lo.c.recovered_at.is_(None), or_(o.c.callback_at.is_not(None), o.c.shop_paid_at.is_not(None)))
            )
            for r in conn.execute(back):
                recovered.append(LostOrder(r.order_id, r.channel, r.amount, r.trade_no, r.channel_paid_at,
                                           r.evidence, r.found_at, now))
            for lost in recovered:
                conn.execute(update(lo).where(lo.c.order_id == lost.order_id).values(recovered_at=now))
                for sink in sinks:
                    self.store._enqueue(conn, sink, f"lost-recovered|{lost.order_id}",
                                        lost.payload("recovered", deadline), now)
        return found, recovered

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
            return [LostOrder(r.order_id, r.channel, r.amount, r.trade_no, r.channel_paid_at, r.evidence,
                              r.found_at, r.recovered_at) for r in conn.execute(q)]

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
        """Forget checks and lost orders older than ``before`` (the orders' retention); replays stay as audit."""
        with self._engine.begin() as conn:
            n = conn.execute(delete(t.reconcile_checks).where(t.reconcile_checks.c.checked_at < before)).rowcount
            n += conn.execute(delete(t.lost_orders).where(t.lost_orders.c.found_at < before)).rowcount
        return int(n)
