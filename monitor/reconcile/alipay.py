"""Alipay 当面付 (``kind: alipay_f2f``) order lookups: ``alipay.trade.query`` by ``out_trade_no``, one id per request.

Each call is :class:`~monitor.clients.alipay.AlipayClient`'s RSA2-signed gateway POST; the answer's signature over
the raw text of its ``alipay_trade_query_response`` node is verified with ``alipay_public_key`` (a signature that
does not verify is ``bad_signature``). Only a *verified* answer counts: an unsigned success or "not found" is
``bad_signature`` too, while an unsigned error (the gateway cannot sign for an unknown ``app_id``) keeps its own
outcome.

- ``10000`` with ``trade_status`` ``TRADE_SUCCESS`` or ``TRADE_FINISHED``: ``paid``. ``paid_at`` is
  ``send_pay_date`` (Beijing time → UTC) when present (else None: never a made-up time), ``amount`` is
  ``total_amount``, ``trade_no`` Alipay's trade number.
- ``10000`` with ``WAIT_BUYER_PAY``: ``unpaid``; with ``TRADE_CLOSED``: ``closed``, not paid (an unpaid order that
  timed out, or a full refund: the query cannot tell the two apart, and neither is money the merchant holds,
  so it is never lost and never replayed). Any other word: ``unknown``.
- ``40004 / ACQ.TRADE_NOT_EXIST``: ``found`` False (the real gateway also says this for a QR code nobody scanned).
- ``20000`` and ``ACQ.SYSTEM_ERROR`` are ``maintenance``, every other code ``business_error`` (the client's rules).

**Batching: one id per request**, ``batch`` ids per lookup: Alipay has no signed batch query for 当面付 trades.
No replay: Alipay notifies are signed with Alipay's private key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.clients.alipay import QUERY, AlipayClient
from monitor.clients.base import ProbeContext, ProbeFailure, decimal_field
from monitor.protocols.alipay import PAID_STATUSES, TRADE_CLOSED, WAIT_BUYER_PAY, parse_alipay_time
from monitor.reconcile.base import ChannelOrder, GatewayQuerier

__all__ = ["AlipayQuerier", "state_of"]

#: Fields of a query answer kept in :attr:`ChannelOrder.fields` (for details; nothing here is replayed).
ANSWER_FIELDS = ("trade_status", "total_amount", "receipt_amount", "buyer_pay_amount", "send_pay_date")


class AlipayQuerier(GatewayQuerier[AlipayClient]):
    """Order lookups for a channel of ``kind: alipay_f2f`` (credentials ``app_id``, ``private_key``,
    ``alipay_public_key``), asked one by one."""

    kind = "alipay_f2f"
    client_class = AlipayClient

    async def lookup_one(self, order_id: str, ctx: ProbeContext) -> ChannelOrder:
        """``alipay.trade.query`` for one id: paid, closed, unpaid, or not found."""
        node = await self.client.query(ctx, order_id, self.timeout)
        if node is None:
            return ChannelOrder(order_id, found=False)
        status = str(node["trade_status"])
        got = node.get("out_trade_no")
        if got is not None and str(got) != order_id:
            raise ProbeFailure("bad_response", f"{QUERY}: asked for {order_id}, the answer is about {str(got)[:40]!r}")
        amount = node.get("total_amount")
        state = state_of(status)
        return ChannelOrder(
            order_id=order_id,
            found=True,
            state=state,
            paid_at=_alipay_time(node.get("send_pay_date")) if state == "paid" else None,
            trade_no=str(node.get("trade_no") or "").strip() or None,
            amount=None if amount in (None, "") else decimal_field(amount, f"{QUERY} total_amount"),
            status=status,
            fields={k: str(node[k]) for k in ANSWER_FIELDS if node.get(k) not in (None, "")},
        )


def state_of(trade_status: str) -> str:
    """What an Alipay ``trade_status`` means (see :data:`monitor.reconcile.base.ORDER_STATES`)."""
    if trade_status in PAID_STATUSES:
        return "paid"
    if trade_status == TRADE_CLOSED:
        return "closed"
    return "unpaid" if trade_status == WAIT_BUYER_PAY else "unknown"


def _alipay_time(value: object) -> datetime | None:
    """An Alipay Beijing ``'Y-m-d H:i:s'`` time as aware UTC; None when absent or malformed."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_alipay_time(value).astimezone(UTC)
    except ValueError:
        return None
