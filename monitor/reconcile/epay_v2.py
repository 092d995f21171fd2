"""epay V2 (EP-new's RSA API) order lookups: ``api/pay/query`` by ``out_trade_no``, one id per request
(protocols.md §2.7, §9 Q12-Q14).

Each request is the probe's signed form POST (``pid``, ``timestamp``, SHA256withRSA with the merchant private key);
a code 0 answer must carry the platform's signature over all its scalar fields, verified with
``platform_public_key``, or the call fails with ``bad_signature``. The answer is read like a V1 order row
(:func:`~monitor.reconcile.epay.order_from_row`): paid ⇔ ``status`` 1/2/3/4, ``paid_at`` from ``endtime`` in the
channel's timezone, ``amount`` from ``money``. -1 订单号不存在 is ``found`` False (errors are unsigned in V2, so
this is as trustworthy as the transport); any other error code is ``business_error`` or ``maintenance`` by the
probe's rules.

**Batching: one id per request**, ``batch`` ids per lookup. ``api/merchant/orders`` would list 50 orders at once,
but its signature covers only ``code`` and ``timestamp`` (arrays are not signed, §9 Q13): the order rows are not
authenticated, and a reconciler that may trigger deliveries must not believe unsigned rows. Its ``status`` filter is
broken as well (§9 Q14). ``api/pay/query`` answers are signed field by field.

No replay: V2 notifies are signed with the *platform* private key, which the merchant does not have (§7).
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from monitor.config.channels import ChannelConfig
from monitor.probes.base import ProbeContext, ProbeFailure
from monitor.probes.epay import fail_on_code, probe_timeout
from monitor.probes.epay_v2 import EpayV2Adapter
from monitor.protocols import epay_v2 as v2
from monitor.reconcile.base import ChannelOrder
from monitor.reconcile.epay import is_not_found, order_from_row

__all__ = ["EpayV2Querier"]


class EpayV2Querier:
    """Order lookups for a channel of ``kind: epay_v2`` (credentials ``pid``, ``private_key``,
    ``platform_public_key``)."""

    kind: str = "epay_v2"
    batch: int = 10

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        self._wire = EpayV2Adapter(channel)  # validates credentials, loads both keys, signs and verifies
        self.timeout = probe_timeout(channel.probes.query, 5.0)
        #: The zone epay writes ``endtime`` in.
        self.tz = ZoneInfo(channel.timezone)

    async def lookup(self, order_ids: Sequence[str], ctx: ProbeContext) -> dict[str, ChannelOrder]:
        """What epay says about each id, asked one by one with signed ``api/pay/query`` calls."""
        return {order_id: await self._one(ctx, order_id) for order_id in dict.fromkeys(order_ids)}

    async def _one(self, ctx: ProbeContext, order_id: str) -> ChannelOrder:
        try:
            _, doc = await self._wire._call(ctx, "pay/query", self.timeout, {"out_trade_no": order_id})
        except ProbeFailure as failure:
            if failure.detail.startswith("api/"):
                raise
            raise ProbeFailure(failure.outcome, f"api/pay/query: {failure.detail}", code=failure.code) from None
        if str(doc.get("code", "")).strip() == str(v2.CODE_OK):
            got = str(doc.get("out_trade_no", ""))
            if got != order_id:
                raise ProbeFailure("bad_response", f"api/pay/query: asked for {order_id}, the answer is about "
                                   f"{got[:40]!r}")
            return order_from_row(order_id, doc, self.tz)
        if is_not_found(doc):
            return ChannelOrder(order_id, found=False)
        raise fail_on_code(doc, "api/pay/query")
