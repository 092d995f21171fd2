"""epay V2 (EP-new's RSA API) order lookups: ``api/pay/query`` by ``out_trade_no``, one id per request.

Each request is :class:`~monitor.clients.epay_v2.EpayV2Client`'s signed form POST (``pid``, ``timestamp``,
SHA256withRSA with the merchant private key); a code 0 answer must carry the platform's signature over all its
scalar fields, verified with ``platform_public_key``, or the call fails with ``bad_signature``. The answer is
read like a V1 order row (:func:`~monitor.reconcile.epay.order_from_row`): 1 paid, 2 refunded, 3 已冻结 and 4
预授权 held (funds frozen, no ``endtime``, no notify), 0 unpaid; ``paid_at`` (paid only) from ``endtime``
in the channel's timezone, ``amount`` from ``money``. -1 订单号不存在 is ``found``
False (errors are unsigned in V2, so this is as trustworthy as the transport); any other error code is
``business_error`` or ``maintenance`` by the client's rules.

**Batching: one id per request**, ``batch`` ids per lookup. ``api/merchant/orders`` would list 50 orders at once,
but its signature covers only ``code`` and ``timestamp`` (arrays are not signed): the order rows are not
authenticated, and a reconciler that may trigger deliveries must not believe unsigned rows. Its ``status`` filter is
broken as well. ``api/pay/query`` answers are signed field by field.

No replay: V2 notifies are signed with the *platform* private key, which the merchant does not have.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from monitor.clients.base import ProbeContext, ProbeFailure
from monitor.clients.epay import fail_on_code, is_not_found, reply_code
from monitor.clients.epay_v2 import EpayV2Client
from monitor.config.channels import ChannelConfig
from monitor.protocols import epay_v2 as v2
from monitor.reconcile.base import ChannelOrder, GatewayQuerier
from monitor.reconcile.epay import order_from_row

__all__ = ["EpayV2Querier"]


class EpayV2Querier(GatewayQuerier[EpayV2Client]):
    """Order lookups for a channel of ``kind: epay_v2`` (credentials ``pid``, ``private_key``,
    ``platform_public_key``), asked one by one with signed ``api/pay/query`` calls."""

    kind = "epay_v2"
    client_class = EpayV2Client

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        #: The zone epay writes ``endtime`` in.
        self.tz = ZoneInfo(channel.timezone)

    async def lookup_one(self, order_id: str, ctx: ProbeContext) -> ChannelOrder:
        """``api/pay/query`` for one id: the order, or ``found`` False for 订单号不存在."""
        try:
            _, doc = await self.client.call(ctx, "pay/query", self.timeout, {"out_trade_no": order_id})
        except ProbeFailure as failure:
            if failure.detail.startswith("api/"):
                raise
            raise failure.prefixed("api/pay/query") from None
        if reply_code(doc) == str(v2.CODE_OK):
            got = str(doc.get("out_trade_no", ""))
            if got != order_id:
                raise ProbeFailure("bad_response", f"api/pay/query: asked for {order_id}, the answer is about "
                                   f"{got[:40]!r}")
            return order_from_row(order_id, doc, self.tz)
        if is_not_found(doc):
            return ChannelOrder(order_id, found=False)
        raise fail_on_code(doc, "api/pay/query")
