"""WeChat Pay API v2 (``kind: wxpay_v2``) probes: ``query`` (``pay/orderquery``) and ``test_order``
(``pay/unifiedorder`` NATIVE + ``pay/closeorder``).

Every call is an XML POST signed MD5 with the merchant's API v2 key (``reference/protocols.md`` §5, signing and
XML from ``monitor.protocols.wxpay``). Answers are judged the way WeChat defines its two levels (§5):

1. a body that is not a flat ``<xml>`` document (HTML, truncated XML) or has no ``return_code`` is ``bad_response``;
2. ``return_code FAIL`` is a communication error that WeChat does not sign (``签名错误`` for a wrong key, a
   mch_id/appid mismatch, ...): ``business_error``, code ``FAIL``, ``return_msg`` in the detail;
3. ``return_code SUCCESS``: the answer must carry a valid ``sign`` over all its other fields, else
   ``bad_signature`` — checked before ``result_code`` is believed, so neither a "not found" nor an error code is
   taken from an answer that fails verification; an answer for another appid / mch_id is ``bad_response``;
4. ``result_code FAIL``: ``err_code SYSTEMERROR`` (系统繁忙) is ``maintenance``; the expected ``ORDERNOTEXIST``
   of a query is ``ok``; any other ``err_code`` is ``business_error`` with the ``err_code`` as code.

- ``query`` asks for the last order ``test_order`` created on this adapter, else the sentinel
  ``out_trade_no`` :data:`SENTINEL`: ``ok`` is a signed ``trade_state`` (in the detail) or ``ORDERNOTEXIST``.
- ``test_order`` creates a NATIVE order of ``probes.test_order.amount`` in fen (1 fen = 0.01 CNY is WeChat's
  minimum and the default; a smaller amount is raised to it), checks for a signed ``code_url``, then, if
  ``probes.test_order.close``, closes it with ``pay/closeorder`` in a ``finally`` — unless the gateway answered
  with ``return_code FAIL`` or a verified refusal, or could not be reached. ``ORDERNOTEXIST`` on close means
  nothing was created. A failed close is added to the detail and, when the check was ``ok``, becomes the
  outcome. The order is never paid, so its ``notify_url`` (required by the API) is a placeholder never called.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from monitor.config import ChannelConfig
from monitor.probes.base import (
    Observation,
    ProbeContext,
    ProbeFailure,
    Reply,
    base_url,
    fetch,
    finish_test_order,
    new_out_trade_no,
)
from monitor.protocols.wxpay import FAIL, SUCCESS, WxpayXmlError, parse_xml, sign_md5, to_fen, to_xml, verify

__all__ = ["PROBE_NOTIFY_URL", "SENTINEL", "WxpayAdapter"]

#: An ``out_trade_no`` no shop ever uses; the gateway must answer ORDERNOTEXIST.
SENTINEL = "paymon-probe-sentinel"
#: ``notify_url`` is required by ``pay/unifiedorder``; probe orders are never paid, so it is never called.
PROBE_NOTIFY_URL = "https://paymon.invalid/wxpay/notify"
NOT_EXIST = "ORDERNOTEXIST"
_MAINTENANCE_CODES = frozenset({"SYSTEMERROR"})
_REQUIRED = ("appid", "mch_id", "key")


class WxpayAdapter:
    """Probes for a channel of ``kind: wxpay_v2`` (credentials ``appid``, ``mch_id``, ``key``)."""

    kind = "wxpay_v2"
    supports: tuple[str, ...] = ("query", "test_order")

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        missing = [name for name in _REQUIRED if not channel.credentials.get(name)]
        if missing:
            raise ValueError(f"channel {channel.id}: wxpay_v2 needs credentials {', '.join(missing)}")
        self.base = base_url(channel.endpoint)
        creds = channel.credentials
        self.appid, self.mch_id, self.key = creds["appid"], creds["mch_id"], creds["key"]
        #: The ``out_trade_no`` of the last order ``test_order`` created; ``query`` asks for it.
        self.last_order: str | None = None

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe == "query":
            return await self._query(ctx)
        if probe == "test_order":
            return await self._test_order(ctx)
        raise ProbeFailure("bad_response", f"probe {probe} is not supported for wxpay_v2")

    # ---- probes ------------------------------------------------------------------------------------

    async def _query(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.query
        timeout = spec.timeout.total_seconds() if spec is not None else 5.0
        which = "last test order" if self.last_order else "sentinel order"
        fields = await self._call(ctx, "pay/orderquery", {"out_trade_no": self.last_order or SENTINEL}, timeout)
        if fields["result_code"] == SUCCESS:
            state = fields.get("trade_state", "")
            if not state:
                raise ProbeFailure("bad_response", "pay/orderquery: result_code SUCCESS without a trade_state")
            return Observation(SUCCESS, f"{which}: trade_state {state[:40]}")
        if fields.get("err_code") == NOT_EXIST:
            return Observation(NOT_EXIST, f"{which}: {NOT_EXIST} (not found, as expected)")
        raise _business_failure("pay/orderquery", fields)

    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = spec.timeout.total_seconds() if spec is not None else 10.0
        fee = max(to_fen(spec.amount if spec is not None else Decimal("0.01")), 1)
        out_trade_no = new_out_trade_no(ctx)
        order = {"body": "paymon probe", "out_trade_no": out_trade_no, "total_fee": str(fee),
                 "spbill_create_ip": "127.0.0.1", "notify_url": PROBE_NOTIFY_URL, "trade_type": "NATIVE"}
        may_exist = False
        result: Observation | ProbeFailure
        close_failure: ProbeFailure | None = None
        closed = False
        try:
            may_exist = True
            fields = await self._call(ctx, "pay/unifiedorder", order, timeout)
            if fields["result_code"] != SUCCESS:
                may_exist = False  # the gateway refused the order: there is nothing to close
                raise _business_failure("pay/unifiedorder", fields)
            code_url = fields.get("code_url", "")
            if not code_url.startswith("weixin://"):
                raise ProbeFailure("bad_response", "pay/unifiedorder: no weixin:// code_url in a SUCCESS answer")
            self.last_order = out_trade_no
            result = Observation(SUCCESS, f"unifiedorder NATIVE {fee} fen: code_url {code_url[:60]}")
        except ProbeFailure as failure:
            result = failure
            # Never reached the gateway, or return_code FAIL (the request was not processed): nothing to close.
            if failure.outcome == "connect_error" or (failure.outcome == "business_error" and failure.code == FAIL):
                may_exist = False
        finally:
            if may_exist and (spec is None or spec.close):
                try:
                    closed = await self._close(ctx, out_trade_no, timeout)
                except ProbeFailure as failure:
                    close_failure = failure
        return finish_test_order(result, close_failure, closed)

    async def _close(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> bool:
        """Close the probe order; True if closed, False if the gateway never created it."""
        fields = await self._call(ctx, "pay/closeorder", {"out_trade_no": out_trade_no}, timeout)
        if fields["result_code"] == SUCCESS:
            return True
        if fields.get("err_code") == NOT_EXIST:
            return False
        raise _business_failure("pay/closeorder", fields)

    # ---- the wire ----------------------------------------------------------------------------------

    async def _call(self, ctx: ProbeContext, path: str, params: dict[str, str], timeout: float) -> dict[str, str]:
        """One signed call; the answer's fields once return_code is SUCCESS and the signature verifies (§5)."""
        request: dict[str, object] = {"appid": self.appid.reveal(), "mch_id": self.mch_id.reveal(),
                                      "nonce_str": secrets.token_hex(16), **params}
        request["sign"] = sign_md5(request, self.key.reveal())
        try:
            reply = await fetch(ctx.client, "POST", self.base + path, timeout=timeout,
                                content=to_xml(request).encode("utf-8"),
                                headers={"Content-Type": "text/xml; charset=utf-8"})
        except ProbeFailure as failure:
            raise ProbeFailure(failure.outcome, f"{path}: {failure.detail}", code=failure.code) from None
        fields = _parse(reply, path)
        return_code = fields.get("return_code", "")
        if return_code == FAIL:
            msg = fields.get("return_msg", "")[:160]
            raise ProbeFailure("business_error", f"{path}: return_code FAIL {msg}".rstrip(), code=FAIL)
        if return_code != SUCCESS:
            raise ProbeFailure("bad_response", f"{path}: return_code {return_code[:20]!r}")
        if not verify(fields, self.key.reveal()):
            raise ProbeFailure("bad_signature", f"{path}: response signature does not verify")
        if fields.get("appid") != self.appid.reveal() or fields.get("mch_id") != self.mch_id.reveal():
            raise ProbeFailure("bad_response", f"{path}: answer is for another appid / mch_id")
        if fields.get("result_code") not in (SUCCESS, FAIL):
            raise ProbeFailure("bad_response", f"{path}: no result_code")
        return fields


def _parse(reply: Reply, path: str) -> dict[str, str]:
    if reply.status >= 400:
        raise ProbeFailure("http_error", f"{path}: HTTP {reply.status}", code=str(reply.status))
    try:
        fields = parse_xml(reply.body)
    except WxpayXmlError as exc:
        text = reply.body[:60].decode("utf-8", errors="replace").strip()
        # Show what came instead of XML (an HTML page...), not the start of a broken XML answer (merchant ids).
        seen = "" if text.startswith("<xml") else f": {' '.join(text.split())!r}"
        raise ProbeFailure("bad_response", f"{path}: not WeChat XML ({exc}){seen}") from None
    if not fields.get("return_code"):
        raise ProbeFailure("bad_response", f"{path}: XML without return_code")
    return fields


def _business_failure(path: str, fields: dict[str, str]) -> ProbeFailure:
    """A signed ``result_code FAIL`` answer: maintenance for SYSTEMERROR, else business_error."""
    err_code = fields.get("err_code", "") or FAIL
    des = fields.get("err_code_des", "")[:160]
    outcome = "maintenance" if err_code in _MAINTENANCE_CODES else "business_error"
    return ProbeFailure(outcome, f"{path}: result_code FAIL {err_code} {des}".rstrip(), code=err_code)
