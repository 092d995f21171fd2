"""Alipay 当面付 (``kind: alipay_f2f``) order lookups: ``alipay.trade.query`` by ``out_trade_no``, one id per request
(protocols.md §4, §7).

Each call is the probe's RSA2-signed gateway POST; the answer's signature over the raw text of its
``alipay_trade_query_response`` node is verified with ``alipay_public_key`` (a signature that does not verify is
``bad_signature``). Only a *verified* answer counts: an unsigned success or "not found" is ``bad_signature`` too,
while an unsigned error (the gateway cannot sign for an unknown ``app_id``) keeps its own outcome.

- ``10000`` with ``trade_status`` ``TRADE_SUCCESS`` or ``TRADE_FINISHED``: paid. ``paid_at`` is ``send_pay_date``
  (Beijing time → UTC) when present, ``amount`` is ``total_amount``, ``trade_no`` Alipay's trade number.
- ``10000`` with ``WAIT_BUYER_PAY`` or ``TRADE_CLOSED``: found, unpaid. (``TRADE_CLOSED`` also covers a full
  refund, §7: the query cannot tell the two apart, and neither is money the merchant holds.)
- ``40004 / ACQ.TRADE_NOT_EXIST``: ``found`` False (the real gateway also says this for a QR code nobody scanned).
- ``20000`` and ``ACQ.SYSTEM_ERROR`` are ``maintenance``, every other code ``business_error`` (the probe's rules).

**Batching: one id per request**, ``batch`` ids per lookup: Alipay has no signed batch query for 当面付 trades.
No replay: Alipay notifies are signed with Alipay's private key (§7).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from monitor.config.channels import ChannelConfig
from monitor.probes.alipay import NOT_EXIST, QUERY, AlipayAdapter
from monitor.probes.base import ProbeContext, ProbeFailure
from monitor.probes.epay import decimal_field, probe_timeout
from monitor.protocols.alipay import CODE_BUSINESS_FAILED, CODE_OK, PAID_STATUSES, parse_alipay_time
from monitor.reconcile.base import ChannelOrder

__all__ = ["AlipayQuerier"]

#: Fields of a query answer kept in :attr:`ChannelOrder.fields` (for details; nothing here is replayed).
ANSWER_FIELDS = ("trade_status", "total_amount", "receipt_amount", "buyer_pay_amount", "send_pay_date")


class AlipayQuerier:
    """Order lookups for a channel of ``kind: alipay_f2f`` (credentials ``app_id``, ``private_key``,
    ``alipay_public_key``)."""

    kind: str = "alipay_f2f"
    batch: int = 10

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        self._wire = AlipayAdapter(channel)  # validates credentials, loads both keys, signs and verifies
        self.timeout = probe_timeout(channel.probes.query, 5.0)

    async def lookup(self, order_ids: Sequence[str], ctx: ProbeContext) -> dict[str, ChannelOrder]:
        """What Alipay says about each id, asked one by one."""
        return {order_id: await self._one(ctx, order_id) for order_id in dict.fromkeys(order_ids)}

    async def _one(self, ctx: ProbeContext, order_id: str) -> ChannelOrder:
        answer = await self._wire._call(ctx, QUERY, {"out_trade_no": order_id}, self.timeout)
        if answer.code == CODE_OK or answer.sub_code == NOT_EXIST:
            if not answer.signed:
                raise ProbeFailure("bad_signature", f"{QUERY}: unsigned {answer.code} answer")
            if answer.code == CODE_BUSINESS_FAILED:
                return ChannelOrder(order_id, found=False)
        if answer.code != CODE_OK:
            raise answer.failure()
        node = answer.node
        status = node.get("trade_status")
        if not isinstance(status, str) or not status:
            raise ProbeFailure("bad_response", f"{QUERY}: code 10000 without a trade_status")
        got = node.get("out_trade_no")
        if got is not None and str(got) != order_id:
            raise ProbeFailure("bad_response", f"{QUERY}: asked for {order_id}, the answer is about {str(got)[:40]!r}")
        amount = node.get("total_amount")
        paid = status in PAID_STATUSES
        return ChannelOrder(
            order_id=order_id,
            found=True,
            paid=paid,
            paid_at=_alipay_time(node.get("send_pay_date")) if paid else None,
            trade_no=str(node.get("trade_no") or "").strip() or None,
            amount=None if amount in (None, "") else decimal_field(amount, f"{QUERY} total_amount"),
            status=status,
            fields={k: str(node[k]) for k in ANSWER_FIELDS if node.get(k) not in (None, "")},
        )


def _alipay_time(value: object) -> datetime | None:
    """An Alipay Beijing ``'Y-m-d H:i:s'`` time as aware UTC; None when absent or malformed."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_alipay_time(value).astimezone(UTC)
    except ValueError:
        return None
