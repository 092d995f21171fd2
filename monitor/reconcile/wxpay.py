"""WeChat Pay API v2 (``kind: wxpay_v2``) order lookups through ``pay/orderquery``, and notify replay.

**Lookup**, one id per request (WeChat has no batch order query), ``batch`` ids per lookup. Each call is
:class:`~monitor.clients.wxpay.WxpayClient`'s MD5-signed XML POST, judged in WeChat's order: ``return_code``
FAIL is ``business_error``; then the answer's signature must verify (else ``bad_signature``) and name our appid /
mch_id; then ``result_code``.

- ``trade_state`` ``SUCCESS``: ``paid``. ``paid_at`` is ``time_end`` (Beijing ``yyyyMMddHHmmss``) as UTC when
  given (else None: never a made-up time), ``amount`` is ``total_fee`` fen as yuan, ``trade_no`` the
  ``transaction_id``.
- ``REFUND`` (the money arrived and was refunded later): ``refunded``, the buyer has it back: never lost, never
  replayed.
- ``NOTPAY``, ``USERPAYING`` (the buyer is entering a password: not final, asked again later), ``PAYERROR``,
  ``ACCEPT``: ``unpaid``; ``CLOSED``, ``REVOKED``: ``closed``; any other word ``unknown``.
- ``result_code`` FAIL with ``err_code`` ``ORDERNOTEXIST``: ``found`` False; ``SYSTEMERROR`` is ``maintenance``,
  any other ``err_code`` ``business_error``.

**Replay** (:meth:`WxpayQuerier.replay`): the XML notify WeChat would POST for a ``SUCCESS`` order, MD5-signed
with the merchant key: ``return_code``/``result_code`` SUCCESS, ``appid``, ``mch_id``, a fresh ``nonce_str``, the
payment fields the query returned (``openid``, ``trade_type``, ``bank_type``, ``total_fee``, ``cash_fee``,
``fee_type``, ``is_subscribe``, ``attach``, ``transaction_id``, ``time_end``) and ``out_trade_no``. Acknowledged
⇔ HTTP 200 and WeChat's XML ``return_code`` SUCCESS, or a body of exactly ``success`` (what dujiaoka
answers). A ``REFUND`` order is reported back unsent. Wire faults are a :class:`ReplayResult` with ``status_code``
None; details never carry the key or the signature.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import InvalidOperation

from monitor.clients.base import USER_AGENT, ProbeContext, ProbeFailure
from monitor.clients.wxpay import WxpayClient
from monitor.protocols.wxpay import SUCCESS, from_fen, is_notify_ack, parse_time_end, sign_md5, to_xml
from monitor.reconcile.base import ChannelOrder, GatewayQuerier, ReplayResult
from monitor.reconcile.epay import deliver_notify

__all__ = ["NOTIFY_TIMEOUT_S", "PAID_STATES", "STATES", "WxpayQuerier"]

#: ``trade_state`` values meaning the buyer's money arrived (REFUND: and was refunded later).
PAID_STATES = frozenset({"SUCCESS", "REFUND"})
#: What each ``trade_state`` means for the shop (any other word is ``unknown``).
STATES: dict[str, str] = {
    "SUCCESS": "paid", "REFUND": "refunded", "NOTPAY": "unpaid", "USERPAYING": "unpaid", "PAYERROR": "unpaid",
    "ACCEPT": "unpaid", "CLOSED": "closed", "REVOKED": "closed",
}
#: Fields of a query answer kept in :attr:`ChannelOrder.fields`: the ones a notify carries (appid and mch_id come
#: from the channel's credentials, nonce_str and sign are made afresh).
NOTIFY_FIELDS = ("openid", "trade_type", "bank_type", "total_fee", "cash_fee", "fee_type", "is_subscribe", "attach",
                 "transaction_id", "time_end")
#: How long a replayed notify waits for the shop.
NOTIFY_TIMEOUT_S = 5.0


class WxpayQuerier(GatewayQuerier[WxpayClient]):
    """Order lookups and notify replay for a channel of ``kind: wxpay_v2`` (credentials ``appid``, ``mch_id``,
    ``key``); lookups are asked one by one."""

    kind = "wxpay_v2"
    client_class = WxpayClient

    async def lookup_one(self, order_id: str, ctx: ProbeContext) -> ChannelOrder:
        """``pay/orderquery`` for one id: its state (paid, refunded, closed, unpaid…), or not found
        (ORDERNOTEXIST)."""
        fields = await self.client.order_query(ctx, order_id, self.timeout)
        if fields is None:
            return ChannelOrder(order_id, found=False)
        state = fields["trade_state"]
        got = fields.get("out_trade_no")
        if got is not None and got != order_id:
            raise ProbeFailure("bad_response",
                               f"pay/orderquery: asked for {order_id}, the answer is about {got[:40]!r}")
        meaning = STATES.get(state, "unknown")
        fee = fields.get("total_fee", "")
        try:
            amount = from_fen(fee) if fee else None
        except (ValueError, InvalidOperation):
            raise ProbeFailure("bad_response",
                               f"pay/orderquery: total_fee {fee[:20]!r} is not a number of fen") from None
        return ChannelOrder(
            order_id=order_id,
            found=True,
            state=meaning,
            paid_at=_time_end(fields.get("time_end")) if meaning == "paid" else None,
            trade_no=fields.get("transaction_id") or None,
            amount=amount,
            status=state,
            fields={k: fields[k] for k in (*NOTIFY_FIELDS, "trade_state") if fields.get(k)},
        )

    async def replay(self, order: ChannelOrder, notify_url: str, ctx: ProbeContext) -> ReplayResult:
        """POST the signed XML notify of a ``SUCCESS`` order to ``notify_url`` as WeChat would."""
        if not order.paid or order.status != SUCCESS:
            return ReplayResult(None, False, f"not sent: order {order.order_id} is not plainly paid "
                                             f"(trade_state {order.status or '?'})", sent=False)
        fields = order.fields
        missing = [name for name in ("transaction_id", "total_fee", "time_end") if not fields.get(name)]
        if missing:
            return ReplayResult(None, False, f"not sent: the lookup gave no {', '.join(missing)}", sent=False)
        key = self.client.key.reveal()
        notify: dict[str, object] = {
            "return_code": SUCCESS,
            "result_code": SUCCESS,
            "appid": self.client.appid.reveal(),
            "mch_id": self.client.mch_id.reveal(),
            "nonce_str": secrets.token_hex(16),
            "trade_type": "NATIVE",  # what dujiaoka opens; the query's own value wins below
            **{k: fields[k] for k in NOTIFY_FIELDS if fields.get(k)},
            "out_trade_no": order.order_id,
        }
        sign = sign_md5(notify, key)
        notify["sign"] = sign
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Content-Type": "text/xml; charset=utf-8"}
        return await deliver_notify(ctx, "POST", notify_url, headers=headers, timeout=NOTIFY_TIMEOUT_S,
                                    content=to_xml(notify).encode("utf-8"), ack=is_notify_ack, hide=(key, sign))


def _time_end(value: str | None) -> datetime | None:
    """``time_end`` as aware UTC; None when absent or malformed."""
    if not value:
        return None
    try:
        return parse_time_end(value)
    except ValueError:
        return None
