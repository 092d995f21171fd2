"""Frozen records shared by every stage: what was observed, what was decided, what was done.

All datetimes are timezone-aware UTC. Stages pass these by value; none of them reaches back into another stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

__all__ = [
    "CHANGE_KINDS",
    "CHANNEL_STATES",
    "EVENT_KINDS",
    "FUTURE_TOLERANCE",
    "HELD_STATUS_WORDS",
    "MERCHANT_BANNED",
    "OUTCOMES",
    "PROBE_TYPES",
    "REJECTED_LINES_KEPT",
    "AlertEvent",
    "AlertState",
    "Candidate",
    "ChannelStats",
    "CheckAnswer",
    "Checkpoint",
    "HeldFunds",
    "IngestResult",
    "LostOrder",
    "OrderEvent",
    "OutboxItem",
    "PaidOrder",
    "ProbeResult",
    "Replay",
    "RoutingRow",
    "Silence",
    "WeightChange",
]

#: Probe outcomes. ``ok`` is the only success.
OUTCOMES: tuple[str, ...] = (
    "ok",
    "timeout",
    "connect_error",
    "http_error",
    "bad_signature",
    "bad_response",
    "business_error",
    "maintenance",
)

#: The ``code`` of a probe result that says the gateway has banned the merchant (epay ``active``/``status`` 0, or
#: a create refused with 商户已封禁): a ``business_error`` the ``merchant_banned`` signal reads.
MERCHANT_BANNED = "merchant_banned"

#: The three probe types a channel may configure.
PROBE_TYPES: tuple[str, ...] = ("query", "test_order", "balance")

#: Order events of the JSONL log.
EVENT_KINDS: tuple[str, ...] = (
    "order_created",
    "pay_redirect",
    "return_received",
    "callback_received",
    "order_paid",
    "order_delivered",
    "order_expired",
)

CHANNEL_STATES: tuple[str, ...] = ("healthy", "degraded", "down", "maintenance", "unknown")

#: Timestamps further ahead of the clock than this are rejected at ingest (a wrong clock or a wrong timezone). The
#: store relies on it too: an order's evidence time is never more than this ahead of when its row was written.
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe call and how it ended. ``detail`` is already redacted; ``code`` is the gateway's own code."""

    channel: str
    probe: str
    outcome: str
    latency_s: float
    started_at: datetime
    detail: str = ""
    code: str | None = None
    #: A measured number, where the probe has one (the balance probe: the unsettled balance).
    value: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class OrderEvent(NamedTuple):
    """One line of the shop's order log, normalised: ``ts`` and ``paid_at`` are aware UTC.

    A named tuple rather than a frozen dataclass: just as immutable, and four times cheaper to build, which is a
    tenth of the cost of ingesting a line (``bench/ingest.py``).
    """

    ts: datetime
    event: str
    order_id: str
    channel: str
    method: str | None = None
    amount: Decimal | None = None
    trade_no: str | None = None
    paid_at: datetime | None = None
    verified: bool | None = None
    detail: str | None = None


#: How many rejected line numbers an :class:`IngestResult` keeps per reason (enough to find the writer's bug).
REJECTED_LINES_KEPT = 5


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Counts of one ingestion batch (the ``paymon_ingest_events_total`` results)."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: The line numbers (from 1) of the first :data:`REJECTED_LINES_KEPT` rejected lines per reason, where the
    #: reader knows them; added results should be in file order. Not compared: where is not what was counted.
    rejected_lines: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)

    def __add__(self, other: IngestResult) -> IngestResult:
        reasons = dict(self.reasons)
        for k, v in other.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
        lines = dict(self.rejected_lines)
        for k, numbers in other.rejected_lines.items():
            lines[k] = (lines.get(k, ()) + numbers)[:REJECTED_LINES_KEPT]
        return IngestResult(
            self.accepted + other.accepted,
            self.duplicate + other.duplicate,
            self.rejected + other.rejected,
            reasons,
            lines,
        )


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one (rule, channel) pair stands. ``pending_since`` starts the ``for`` clock; ``fired_at`` marks firing."""

    rule: str
    channel: str
    state: Literal["inactive", "pending", "firing"] = "inactive"
    pending_since: datetime | None = None
    fired_at: datetime | None = None
    last_notified_at: datetime | None = None
    reminders: int = 0
    value: float | None = None
    #: A statistical detector's own state as JSON (the CUSUM statistic), for rules with ``detector``.
    detector: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A notification to deliver: an alert fired, is still firing (reminder), or resolved."""

    kind: Literal["firing", "reminder", "resolved"]
    rule: str
    channel: str
    severity: str
    at: datetime
    value: float | None
    threshold: float | None
    signal: str
    summary: str
    actions: tuple[str, ...] = ()
    #: For an alert on a probe signal: the last probes' (outcome, detail), newest first, saying why it fires.
    probes: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """Idempotency key: the same event is never queued twice."""
        return f"{self.rule}|{self.channel}|{self.kind}|{self.at.isoformat()}"


#: The ``reason`` label of ``paymon_routing_changes_total``: what kind of weight change it was (a bounded set; the
#: audit's own reason text names the rule). ``operator``: any change not made by paymon (a hand edit it found, a
#: ``paymon weights`` command); paymon's own are ``drain`` (to 0), ``reduce`` (lower) or ``restore`` (higher).
CHANGE_KINDS: tuple[str, ...] = ("drain", "reduce", "restore", "operator")


@dataclass(frozen=True, slots=True)
class WeightChange:
    """One routing-weight change, as audited. ``actor`` is ``paymon``, ``operator`` (an edit paymon detected), or
    who changed it by command (``cli:<user>``, ``telegram:<id>``)."""

    channel: str
    old: int
    new: int
    reason: str
    at: datetime
    rule: str | None = None
    actor: str = "paymon"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source stopped: which file (``file_id``, e.g. ``dev:inode``) and the byte offset or row id in it.

    A file source also keeps a ``fingerprint`` of the file's first ``fingerprint_size`` bytes (those already read,
    at most 1 KiB): a file truncated in place and refilled (copytruncate) keeps its ``file_id``, and may have
    outgrown the old offset before the next read, so only its first bytes tell it is new. ``None``: not known (a
    checkpoint saved before fingerprints, or a source that is not a file)."""

    source: str
    file_id: str
    position: int
    fingerprint: str | None = None
    fingerprint_size: int = 0


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """The numbers of one channel over one window. ``None`` means "not enough data to say"."""

    channel: str
    window: str
    orders: int
    succeeded: int
    failed: int
    success_ratio: float | None
    paid_at_channel: int
    lost: int
    lost_order_ratio: float | None
    callback_p50: float | None
    callback_p95: float | None
    callback_p99: float | None
    pending: int
    #: The funnel over orders created in the window: how many reached each stage (``orders`` is the first).
    redirected: int = 0
    paid: int = 0
    callback: int = 0
    delivered: int = 0

    @property
    def decided(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A queued notification for one sink."""

    id: int
    sink: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Notifications for ``channel`` (and ``rule``, or every rule when None) are muted until ``ends_at``."""

    id: int
    channel: str
    rule: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoutingRow:
    """paymon's routing bookkeeping for one channel (see ``monitor.store.tables.routing_state``)."""

    channel: str
    baseline: int
    target: int
    applied: int | None
    step: int
    reason: str
    changed_at: datetime
    healthy_since: datetime | None = None
    operator_hold: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order the shop still thinks unpaid, due a question to its channel."""

    order_id: str
    channel: str
    created_at: datetime
    checks: int = 0


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """What the channel said about one order: ``status`` is its own word, ``state`` what it means (``paid``,
    ``held``, ``refunded``, ``closed``, ``unpaid``, ``unknown``, or ``not_found``/``no_answer``). ``paid_at`` is
    the channel's own pay time of a paid order, None when it gave none (never filled in by paymon)."""

    order_id: str
    status: str
    state: str
    paid_at: datetime | None = None
    trade_no: str | None = None

    @property
    def paid(self) -> bool:
        return self.state == "paid"


@dataclass(frozen=True, slots=True)
class PaidOrder:
    """An order as the lost-order rule reads it: the channel's word that it was paid (its pay time, a callback
    that did not verify, or the time paymon learned it from an order query that gave no pay time) and the shop's
    word that the payment arrived (a verified callback, its own paid mark)."""

    order_id: str
    channel: str
    amount: str | None
    trade_no: str | None
    channel_paid_at: datetime | None
    unverified_callback_at: datetime | None = None
    callback_at: datetime | None = None
    shop_paid_at: datetime | None = None
    #: When paymon learned from the channel's order query that it was paid, the channel giving no pay time. Never
    #: a pay time: it only starts the callback deadline when nothing better is known.
    paid_learned_at: datetime | None = None

    @property
    def evidence_at(self) -> datetime | None:
        """When the channel was paid, as far as paymon knows: its pay time, else the unverified callback, else the
        time paymon learned it."""
        return self.channel_paid_at or self.unverified_callback_at or self.paid_learned_at

    @property
    def completed(self) -> bool:
        """The shop has the payment: a verified callback arrived, or the shop marked the order paid."""
        return self.callback_at is not None or self.shop_paid_at is not None


@dataclass(frozen=True, slots=True)
class LostOrder:
    """A lost order (掉单): the channel has the money, the shop has no verified callback past the deadline.

    ``evidence`` says how paymon knows it was paid: ``reconcile`` (the channel's order query) or
    ``unverified_callback`` (a callback arrived but did not verify). ``channel_paid_at`` is only ever a pay time
    the channel gave; when it gave none, ``paid_learned_at`` says when paymon learned of the payment (shown as
    that, never as a pay time)."""

    order_id: str
    channel: str
    amount: str | None
    trade_no: str | None
    channel_paid_at: datetime | None
    evidence: str
    found_at: datetime
    recovered_at: datetime | None = None
    paid_learned_at: datetime | None = None

    def payload(self, kind: str, deadline: timedelta) -> dict[str, Any]:
        """The outbox JSON for this lost order: ``kind`` ``found`` or ``recovered``."""
        return {
            "type": "lost_order",
            "kind": kind,
            "order_id": self.order_id,
            "channel": self.channel,
            "amount": self.amount,
            "trade_no": self.trade_no,
            "channel_paid_at": _iso(self.channel_paid_at),
            "paid_learned_at": _iso(self.paid_learned_at),
            "evidence": self.evidence,
            "deadline_s": deadline.total_seconds(),
            "at": (self.recovered_at if kind == "recovered" and self.recovered_at else self.found_at).isoformat(),
        }


#: The channel's status words of held funds, as operators know them (epay ``status`` 3 and 4).
HELD_STATUS_WORDS: dict[str, tuple[str, str]] = {"3": ("已冻结", "frozen"), "4": ("预授权", "pre-authorised")}


@dataclass(frozen=True, slots=True)
class HeldFunds:
    """Held funds: the channel holds the buyer's money without completing the payment (epay 3 已冻结,
    EP-new 4 预授权), so the shop has no order. Its own class: not lost, not paid, never replayed; an operator must
    look. ``status`` is the channel's own word; ``seen_at`` the time paymon saw it (not a pay time: the channel
    gives none). ``released_at`` is set once the channel says something else or the shop completes the order;
    ``release`` says which (``paid``, ``refunded``, ``closed``, ``unpaid``, ``completed``)."""

    order_id: str
    channel: str
    amount: str | None
    trade_no: str | None
    status: str
    seen_at: datetime
    released_at: datetime | None = None
    release: str | None = None

    def payload(self, kind: str) -> dict[str, Any]:
        """The outbox JSON: ``kind`` ``held`` (found) or ``released``."""
        return {
            "type": "held_funds",
            "kind": kind,
            "order_id": self.order_id,
            "channel": self.channel,
            "amount": self.amount,
            "trade_no": self.trade_no,
            "status": self.status,
            "seen_at": self.seen_at.isoformat(),
            "release": self.release,
            "at": (self.released_at if kind == "released" and self.released_at else self.seen_at).isoformat(),
        }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


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
