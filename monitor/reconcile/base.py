"""The reconciliation contract: ask a channel what became of orders the shop still thinks unpaid.

A querier (one file per channel ``kind``) answers :meth:`Querier.lookup` for a handful of the shop's order ids
(the ``out_trade_no`` the shop sent the gateway) with what the channel says about each: not found, or found in one
of :data:`ORDER_STATES` (paid with its pay time when the channel gives one, held, refunded, closed, unpaid,
unknown), with its trade number and amount. Wire faults raise :class:`~monitor.clients.base.ProbeFailure`, exactly
as probes do, and cost the whole call: the reconciler asks again on its next round, it never guesses.

A querier whose protocol lets the merchant key sign notifies (epay V1, WeChat Pay v2) may also implement
:meth:`Replayer.replay`: re-send the channel's notify for a paid order to the shop, correctly signed, the way the
gateway would have, so the shop completes the order itself. The reconciler audits every replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar, runtime_checkable

from monitor.clients.base import ProbeContext, probe_timeout
from monitor.config.channels import ChannelConfig

__all__ = ["ORDER_STATES", "ChannelOrder", "GatewayQuerier", "Querier", "QuerierFactory", "ReplayResult", "Replayer"]


#: What a channel's answer about an order means for the shop, whatever the channel's own word:
#:
#: - ``paid``: the buyer's money arrived and the channel keeps it (epay 1, Alipay TRADE_SUCCESS/TRADE_FINISHED,
#:   WeChat SUCCESS). Only this can make an order lost, and only this is ever replayed.
#: - ``held``: the channel holds the buyer's money without completing the payment (epay 3 已冻结, EP-new 4 预授权):
#:   **held funds**, its own class, reported for an operator to look at; never lost, never replayed.
#: - ``refunded``: paid, then given back (epay 2, WeChat REFUND): the buyer has the money back; never lost.
#: - ``closed``: the channel closed the order (Alipay TRADE_CLOSED: unpaid timeout *or* full refund, the query cannot
#:   tell; WeChat CLOSED/REVOKED): no money held.
#: - ``unpaid``: not paid (yet): epay 0, Alipay WAIT_BUYER_PAY, WeChat NOTPAY/USERPAYING/PAYERROR.
#: - ``unknown``: a status word paymon does not know; never taken for paid.
ORDER_STATES: tuple[str, ...] = ("paid", "held", "refunded", "closed", "unpaid", "unknown")


@dataclass(frozen=True, slots=True)
class ChannelOrder:
    """What a channel says about one of the shop's orders.

    ``found`` False: the channel has no such order (never opened, or purged while unpaid). ``state`` is what the
    answer means (one of :data:`ORDER_STATES`); :attr:`paid` is ``state == "paid"``. ``paid_at`` is the channel's
    pay time (aware UTC), only when the channel gives one for a paid order: never invented. ``status`` is the
    channel's own word for the state (``1``, ``TRADE_SUCCESS``, ``NOTPAY``), for details and logs. ``fields``
    keeps the non-secret fields of the channel's answer that a replay needs (``type``, ``name``, ``time_end``…).
    """

    order_id: str
    found: bool
    state: str = "unknown"
    paid_at: datetime | None = None
    trade_no: str | None = None
    amount: Decimal | None = None
    status: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def paid(self) -> bool:
        """The channel says plainly paid (not held, refunded or closed)."""
        return self.found and self.state == "paid"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How the shop answered a replayed notify: HTTP status (None: no answer), acknowledged per the protocol's
    ack rule, and a short redacted detail. ``sent`` False: paymon refused to send it (the order is not plainly
    paid, or the lookup lacks what the notify needs); the detail says why."""

    status_code: int | None
    acknowledged: bool
    detail: str
    sent: bool = True


class Querier(Protocol):
    """Order lookups for one channel. ``batch`` is how many ids one :meth:`lookup` call should be given."""

    kind: str
    batch: int

    async def lookup(self, order_ids: Sequence[str], ctx: ProbeContext) -> dict[str, ChannelOrder]:
        """What the channel says about each of ``order_ids`` (every id gets an answer), or ProbeFailure."""
        ...


@runtime_checkable
class Replayer(Protocol):
    """A querier that can also re-send a paid order's notify to the shop."""

    async def replay(self, order: ChannelOrder, notify_url: str, ctx: ProbeContext) -> ReplayResult:
        """Send the notify for ``order`` (which ``lookup`` found paid) to ``notify_url``; never raises for wire
        faults (they are a ReplayResult with ``status_code`` None)."""
        ...


#: What a registry holds per kind: builds the querier of a channel (ValueError for unusable credentials).
QuerierFactory = Callable[[ChannelConfig], Querier]


ClientT = TypeVar("ClientT")


class GatewayQuerier(Generic[ClientT]):
    """Base of the queriers: building one builds its kind's gateway client (``client_class``) for the channel,
    which raises ``ValueError`` for unusable credentials; every question has the channel's query probe timeout
    (5 s by default). :meth:`lookup` asks :meth:`lookup_one` for each id in turn, for a gateway with no batch
    query (one id per request, ``batch`` ids per call)."""

    kind: str = ""
    batch: int = 10
    client_class: Callable[[ChannelConfig], ClientT]

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        self.client = self.client_class(channel)
        self.timeout = probe_timeout(channel.probes.query, 5.0)

    async def lookup(self, order_ids: Sequence[str], ctx: ProbeContext) -> dict[str, ChannelOrder]:
        """What the channel says about each id, asked one by one."""
        return {order_id: await self.lookup_one(order_id, ctx) for order_id in dict.fromkeys(order_ids)}

    async def lookup_one(self, order_id: str, ctx: ProbeContext) -> ChannelOrder:
        """What the channel says about ``order_id``, or ProbeFailure."""
        raise NotImplementedError
