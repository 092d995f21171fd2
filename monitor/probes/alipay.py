"""Alipay 当面付 (``kind: alipay_f2f``) probes: ``query`` (``alipay.trade.query``) and ``test_order``
(``alipay.trade.precreate`` + ``alipay.trade.close``).

Every call is :class:`~monitor.clients.alipay.AlipayClient`'s RSA2-signed gateway POST,
whose answer must carry a ``sign`` over the raw text of its response node, verified with the configured Alipay
public key: a signature that does not verify is ``bad_signature``, whatever the answer says, and an unsigned success
or "not found" is never ``ok`` (an unsigned error keeps its outcome, with "unsigned" in the detail).

- ``query`` asks about the order :meth:`~monitor.probes.base.ProbeAdapter.order_to_query` gives (the last test
  order created on this adapter, else a recent one from the store), else the sentinel ``out_trade_no``
  :data:`SENTINEL`. ``ok``: ``code 10000`` with a ``trade_status`` (the status is in the detail),
  or ``40004 / ACQ.TRADE_NOT_EXIST`` (the expected answer for the sentinel, and what the real gateway says for
  an order nobody scanned).
- ``test_order`` precreates ``probes.test_order.amount`` (Alipay's minimum, and the default, is 0.01 CNY; a
  smaller amount is raised to it) and checks that a ``qr_code`` comes back. Then, if ``probes.test_order.close``,
  it closes the trade in a ``finally`` — unless the gateway answered the precreate with a verified error (no
  trade exists) or could not be reached at all. A failed close is added to the detail and, when the check was
  ``ok``, becomes the outcome. Nothing is ever paid.

Gateway errors are the client's: ``20000`` and ``ACQ.SYSTEM_ERROR`` are ``maintenance``, every other code
``business_error`` with ``code`` = ``"<code>/<sub_code>"``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from monitor.clients.alipay import NOT_EXIST, PRECREATE, AlipayAnswer, AlipayClient
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
from monitor.protocols.alipay import CODE_OK, format_amount

__all__ = ["MIN_AMOUNT", "SENTINEL", "AlipayAdapter"]

#: An ``out_trade_no`` no shop ever uses; the gateway must say it does not exist.
SENTINEL = "paymon-probe-sentinel"
#: The smallest ``total_amount`` Alipay accepts (CNY).
MIN_AMOUNT = Decimal("0.01")


class AlipayAdapter(ProbeAdapter[AlipayClient]):
    """Probes for a channel of ``kind: alipay_f2f`` (credentials ``app_id``, ``private_key``,
    ``alipay_public_key``)."""

    kind = "alipay_f2f"
    client_class = AlipayClient

    # ---- probes ------------------------------------------------------------------------------------

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.query, 5.0)
        wanted = await self.order_to_query(ctx)
        which = self.order_source(wanted)
        node = await self.client.query(ctx, wanted or SENTINEL, timeout)
        if node is None:
            return Observation(f"40004/{NOT_EXIST}", f"{which}: 40004 {NOT_EXIST} (not found, as expected)")
        return Observation(CODE_OK, f"{which}: 10000 trade_status {str(node['trade_status'])[:40]}")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = probe_timeout(spec, 10.0)
        wanted = spec.amount if spec is not None else MIN_AMOUNT
        amount = max(wanted.quantize(MIN_AMOUNT, rounding=ROUND_HALF_UP), MIN_AMOUNT)
        out_trade_no = new_out_trade_no(ctx)
        biz = {"out_trade_no": out_trade_no, "total_amount": format_amount(amount), "subject": "paymon probe",
               "product_code": "FACE_TO_FACE_PAYMENT"}

        async def create() -> Observation:
            try:
                answer = await self.client.call(ctx, PRECREATE, biz, timeout)
            except ProbeFailure as failure:  # a reply that fails verification may still mean a made order
                raise self.failed_create(out_trade_no, failure) from None
            if answer.code != CODE_OK:
                raise answer.failure()  # the gateway refused the order: there is nothing to close
            self.remember_order(out_trade_no)
            return self._created(answer, out_trade_no, amount)

        return await create_and_close(create, lambda: self.client.close(ctx, out_trade_no, timeout),
                                      close_after=spec is None or spec.close)

    def _created(self, answer: AlipayAnswer, out_trade_no: str, amount: Decimal) -> Observation:
        """Judge a 10000 precreate answer: signed, with a ``qr_code`` URL."""
        if not answer.signed:
            raise ProbeFailure("bad_signature", f"alipay.trade.precreate: unsigned success answer (order "
                                                f"{out_trade_no})")
        qr_code = answer.node.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code.startswith(("https://", "http://")):
            raise ProbeFailure("bad_response", f"alipay.trade.precreate: no qr_code URL in a 10000 answer (order "
                                               f"{out_trade_no})")
        return Observation(CODE_OK, f"precreate order {out_trade_no} {format_amount(amount)} CNY: qr_code "
                                    f"{qr_code[:60]}")
