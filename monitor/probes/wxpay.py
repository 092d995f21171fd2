"""WeChat Pay API v2 (``kind: wxpay_v2``) probes: ``query`` (``pay/orderquery``) and ``test_order``
(``pay/unifiedorder`` NATIVE + ``pay/closeorder``).

Every call is :class:`~monitor.clients.wxpay.WxpayClient`'s XML POST signed MD5 with the merchant's API v2 key,
judged the way WeChat defines its two levels: ``return_code FAIL`` is
``business_error`` (code ``FAIL``); a ``SUCCESS`` answer must verify (else ``bad_signature``) before its
``result_code`` is believed; ``result_code FAIL`` is ``maintenance`` for ``SYSTEMERROR``, ``ok`` for the
expected ``ORDERNOTEXIST`` of a query, else ``business_error`` with the ``err_code``.

- ``query`` asks about the order :meth:`~monitor.probes.base.ProbeAdapter.order_to_query` gives (the last test
  order created on this adapter, else a recent one from the store), else the sentinel ``out_trade_no``
  :data:`SENTINEL`: ``ok`` is a signed ``trade_state`` (in the detail) or ``ORDERNOTEXIST``.
- ``test_order`` creates a NATIVE order of ``probes.test_order.amount`` in fen (1 fen = 0.01 CNY is WeChat's
  minimum and the default; a smaller amount is raised to it), checks for a signed ``code_url``, then, if
  ``probes.test_order.close``, closes it with ``pay/closeorder`` in a ``finally`` — unless the gateway answered
  with ``return_code FAIL`` or a verified refusal, or could not be reached. ``ORDERNOTEXIST`` on close means
  nothing was created. A failed close is added to the detail and, when the check was ``ok``, becomes the
  outcome. The order is never paid, so its ``notify_url`` (required by the API) is a placeholder never called.
"""

from __future__ import annotations

from decimal import Decimal

from monitor.clients.wxpay import NOT_EXIST, WxpayClient, business_failure
from monitor.probes.base import (
    Observation,
    ProbeAdapter,
    ProbeContext,
    ProbeFailure,
    create_and_close,
    handles,
    new_out_trade_no,
    probe_timeout,
)
from monitor.protocols.wxpay import SUCCESS, to_fen

__all__ = ["PROBE_NOTIFY_URL", "SENTINEL", "WxpayAdapter"]

#: An ``out_trade_no`` no shop ever uses; the gateway must answer ORDERNOTEXIST.
SENTINEL = "paymon-probe-sentinel"
#: ``notify_url`` is required by ``pay/unifiedorder``; probe orders are never paid, so it is never called.
PROBE_NOTIFY_URL = "https://paymon.invalid/wxpay/notify"


class WxpayAdapter(ProbeAdapter[WxpayClient]):
    """Probes for a channel of ``kind: wxpay_v2`` (credentials ``appid``, ``mch_id``, ``key``)."""

    kind = "wxpay_v2"
    client_class = WxpayClient

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.query, 5.0)
        wanted = await self.order_to_query(ctx)
        which = self.order_source(wanted)
        fields = await self.client.order_query(ctx, wanted or SENTINEL, timeout)
        if fields is None:
            return Observation(NOT_EXIST, f"{which}: {NOT_EXIST} (not found, as expected)")
        return Observation(SUCCESS, f"{which}: trade_state {fields['trade_state'][:40]}")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = probe_timeout(spec, 10.0)
        fee = max(to_fen(spec.amount if spec is not None else Decimal("0.01")), 1)
        out_trade_no = new_out_trade_no(ctx)
        order = {"body": "paymon probe", "out_trade_no": out_trade_no, "total_fee": str(fee),
                 "spbill_create_ip": "127.0.0.1", "notify_url": PROBE_NOTIFY_URL, "trade_type": "NATIVE"}

        async def create() -> Observation:
            # A return_code FAIL (the request was not processed) is a business_error: nothing to close either.
            try:
                fields = await self.client.call(ctx, "pay/unifiedorder", order, timeout)
            except ProbeFailure as failure:  # an answer that fails verification may still mean a made order
                raise self.failed_create(out_trade_no, failure) from None
            if fields["result_code"] != SUCCESS:
                raise business_failure("pay/unifiedorder", fields)  # refused: there is nothing to close
            self.remember_order(out_trade_no)
            code_url = fields.get("code_url", "")
            if not code_url.startswith("weixin://"):
                raise ProbeFailure("bad_response", f"pay/unifiedorder: no weixin:// code_url in a SUCCESS answer "
                                                   f"(order {out_trade_no})")
            return Observation(SUCCESS, f"unifiedorder NATIVE order {out_trade_no} {fee} fen: code_url "
                                        f"{code_url[:60]}")

        return await create_and_close(create, lambda: self.client.close_order(ctx, out_trade_no, timeout),
                                      close_after=spec is None or spec.close)
