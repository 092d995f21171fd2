"""epay V2 (EP-new's RSA API) probes: ``query``, ``test_order`` and ``balance``.

Every call is :class:`~monitor.clients.epay_v2.EpayV2Client`'s signed form POST (``pid``, ``timestamp`` from the
probe clock, SHA256withRSA); a code 0 reply that does not verify with ``platform_public_key``
is ``bad_signature``, never ``ok``.

- ``query``: first ``api/merchant/info`` — the merchant's standing (a banned merchant, ``status`` 0, still gets
  normal order answers) in a signed reply, so every ``query`` also checks the platform key. Then ``api/pay/query``
  about the order :meth:`~monitor.probes.base.ProbeAdapter.order_to_query` gives (the last test order, else a
  recent one from the store), else a sentinel ``out_trade_no``. A signed code 0 about the asked order is ``ok``;
  so is -1 订单号不存在 (the expected answer for the sentinel). V2 error replies are unsigned: only an
  answer about an order that exists carries a signature, which is why the probe asks about a real order whenever
  it knows one, and why a test order is remembered even when its create reply failed verification.
- ``test_order``: ``api/pay/create`` (``method=web``, ``device=pc``, ``type=alipay``, ``probes.test_order.amount``
  printed as PHP does, a fresh ``paymon-probe-…`` ``out_trade_no``, loopback notify/return URLs); ``ok`` is a
  signed code 0 with ``trade_no``, ``pay_type`` and ``pay_info``. Never paid; epay cannot close an order (it
  stays unpaid until the site purges it), which the detail says when ``close`` is set.
- ``balance``: ``api/merchant/info``; the value is ``money`` (the unsettled balance). V2 has no settlement list
  (V1's ``act=settle`` has no V2 counterpart), so the last settlement time is unknown: the detail says so
  and reports ``settle_status`` 0 (settlement switched off) as a stall. A banned merchant (``status`` 0) is
  ``business_error`` with code ``merchant_banned`` (the ``merchant_banned`` signal), and so is a create refused
with 商户已封禁.

Outcomes: the client's (维护/繁忙 is ``maintenance``, any other error code ``business_error`` with the gateway's
code and message); numbers may be strings.
"""

from __future__ import annotations

from typing import Any

from monitor.clients.base import Deadline
from monitor.clients.epay import banned, fail_on_code, is_not_found, reply_code, reply_msg
from monitor.clients.epay_v2 import EpayV2Client
from monitor.config.channels import TestOrderProbe
from monitor.probes.base import (
    Observation,
    ProbeAdapter,
    ProbeContext,
    ProbeFailure,
    decimal_field,
    handles,
    new_out_trade_no,
    probe_timeout,
)
from monitor.probes.epay import PLACEHOLDER_URL, SENTINEL
from monitor.protocols import epay as v1

__all__ = ["EpayV2Adapter"]


class EpayV2Adapter(ProbeAdapter[EpayV2Client]):
    """Probes for a channel of ``kind: epay_v2``."""

    kind = "epay_v2"
    client_class = EpayV2Client

    #: ``api/pay/query`` signs its answer about an existing order only.
    signs_only_found_orders = True

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        deadline = Deadline(probe_timeout(self.channel.probes.query, 5.0))
        _, info = await self.client.call(ctx, "merchant/info", deadline.left(), {})
        standing = _standing(info)
        wanted = await self.order_to_query(ctx)
        asked = wanted or SENTINEL
        status, doc = await self.client.call(ctx, "pay/query", deadline.left(), {"out_trade_no": asked})
        code, msg = reply_code(doc), reply_msg(doc)
        if code == "0":
            got = str(doc.get("out_trade_no", ""))
            if got != asked:
                raise ProbeFailure("bad_response", f"api/pay/query: asked for {asked}, the answer is about "
                                   f"{got[:40]!r}")
            state = v1.coerce_int(doc.get("status"))
            name = v1.STATUS_NAMES.get(state, str(state)) if state is not None else "?"
            return Observation(code, f"HTTP {status}, code 0 (signed): {self.order_source(wanted)} {asked} found "
                                     f"({name}); {standing}")
        if is_not_found(doc):
            if wanted is None:
                note = " for the sentinel order (unsigned, as every V2 error; no order to ask about yet)"
            else:
                note = f" ({self.order_source(wanted)} {asked} is unknown to the gateway; unsigned)"
            return Observation(code, f"HTTP {status}, code -1 {msg}{note}; {standing}")
        raise fail_on_code(doc, "api/pay/query")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order or TestOrderProbe()
        out_trade_no = new_out_trade_no(ctx)
        money = v1.format_money(spec.amount)
        params = {
            "method": "web", "device": "pc", "type": "alipay", "out_trade_no": out_trade_no,
            "notify_url": PLACEHOLDER_URL, "return_url": PLACEHOLDER_URL, "name": "paymon probe",
            "money": money, "clientip": "127.0.0.1",
        }
        try:
            status, doc = await self.client.call(ctx, "pay/create", spec.timeout.total_seconds(), params)
        except ProbeFailure as failure:  # a bad_signature create still made the order: query asks about it
            raise self.failed_create(out_trade_no, failure) from None
        if reply_code(doc) != "0":
            raise fail_on_code(doc, "api/pay/create")
        self.remember_order(out_trade_no)  # a verified code 0: the order exists, whatever else is missing
        trade_no = str(doc.get("trade_no") or "").strip()
        pay_type = str(doc.get("pay_type") or "").strip()
        if not trade_no:
            raise ProbeFailure("bad_response", f"api/pay/create: code 0 without a trade_no (order {out_trade_no})")
        if not pay_type or not str(doc.get("pay_info") or "").strip():
            raise ProbeFailure("bad_response", f"api/pay/create: order {out_trade_no} (trade_no {trade_no}) has no "
                                               "pay_type/pay_info")
        note = "; epay cannot close orders, it stays unpaid until the site purges it" if spec.close else ""
        return Observation("0", f"HTTP {status}, code 0 (signed): order {out_trade_no} (trade_no {trade_no}, "
                                f"{money}) created, pay_type {pay_type[:16]}{note}")

    @handles("balance")
    async def _balance(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.balance, 5.0)
        status, doc = await self.client.call(ctx, "merchant/info", timeout, {})
        if reply_code(doc) != "0":
            raise fail_on_code(doc, "api/merchant/info")
        if "money" not in doc:
            raise ProbeFailure("bad_response", "api/merchant/info: answer has no 'money' field")
        money = decimal_field(doc["money"], "api/merchant/info money")
        if v1.coerce_int(doc.get("status")) == 0:
            raise banned("api/merchant/info", f"status 0; balance {money}")
        parts = [f"HTTP {status}, unsettled balance {money}",
                 "last settlement unknown (the V2 API has no settlement list)"]
        if v1.coerce_int(doc.get("pay_status")) == 0:
            parts.append("payments are switched off for the merchant (pay_status 0)")
        if v1.coerce_int(doc.get("settle_status")) == 0:
            parts.append(f"settlement STALL: settlement is switched off (settle_status 0) with {money} waiting"
                         if money > 0 else "settlement is switched off (settle_status 0)")
        return Observation("0", "; ".join(parts), float(money))


def _standing(info: dict[str, Any]) -> str:
    """The merchant's standing from a verified ``api/merchant/info`` answer: a failure when it is an error or says
    banned (``status`` 0); otherwise a few words for the detail (``status`` 2 is 待审核, awaiting review)."""
    if reply_code(info) != "0":
        raise fail_on_code(info, "api/merchant/info")
    state = v1.coerce_int(info.get("status"))
    if state == 0:
        raise banned("api/merchant/info", "status 0")
    return {1: "merchant active", 2: "merchant awaiting review (status 2)"}.get(
        state if state is not None else -1, "merchant standing unknown")
