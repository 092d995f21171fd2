"""The reconciliation contract: ask a channel what became of orders the shop still thinks unpaid.

A querier (one file per channel ``kind``) answers :meth:`Querier.lookup` for a handful of the shop's order ids
(the ``out_trade_no`` the shop sent the gateway) with what the channel says about each: unknown, unpaid, or paid
(with its pay time, trade number and amount). Wire faults raise :class:`~monitor.clients.base.ProbeFailure`, exactly
as probes do, and cost the whole call: the reconciler asks again on its next round, it never guesses.

A querier whose protocol lets the merchant key sign notifies (epay V1, WeChat Pay v2) may also implement
:meth:`Replayer.replay`: re-send the channel's notify for a paid order to the shop, correctly signed, the way the
gateway would have (protocols.md §7), so the shop completes the order itself. The reconciler audits every replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar, runtime_checkable

from monitor.clients.base import ProbeContext, probe_timeout
from monitor.config.channels import ChannelConfig

__all__ = ["ChannelOrder", "GatewayQuerier", "Querier", "QuerierFactory", "ReplayResult", "Replayer"]


@dataclass(frozen=True, slots=True)
class ChannelOrder:
    """What a channel says about one of the shop's orders.

    ``found`` False: the channel has no such order (never opened, or purged while unpaid). ``paid`` is True for
    every status that means the buyer's money arrived (epay 1/2/3/4, Alipay TRADE_SUCCESS/TRADE_FINISHED, WeChat
    SUCCESS/REFUND). ``paid_at`` is the channel's pay time (aware UTC) when it gives one. ``status`` is the
    channel's own word for the state (``1``, ``TRADE_SUCCESS``, ``NOTPAY``), for details and logs. ``fields`` keeps
    the non-secret fields of the channel's answer that a replay needs (``type``, ``name``, ``time_end``…).
    """

    order_id: str
    found: bool
    paid: bool = False
    paid_at: datetime | None = None
    trade_no: str | None = None
    amount: Decimal | None = None
    status: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How the shop answered a replayed notify: HTTP status (None: no answer), acknowledged per the protocol's
    ack rule, and a short redacted detail."""

    status_code: int | None
    acknowledged: bool
    detail: str


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
