"""The WeChat Pay API v2 (``kind: wxpay_v2``) client: MD5-signed XML calls with verified answers.

Every call is an XML POST signed MD5 with the merchant's API v2 key (signing and XML from
:mod:`monitor.protocols.wxpay`). Answers are judged the way WeChat defines its two levels:

1. a body that is not a flat ``<xml>`` document (HTML, truncated XML) or has no ``return_code`` is ``bad_response``;
2. ``return_code FAIL`` is a communication error that WeChat does not sign (``签名错误`` for a wrong key, a
   mch_id/appid mismatch, ...): ``business_error``, code ``FAIL``, ``return_msg`` in the detail;
3. ``return_code SUCCESS``: the answer must carry a valid ``sign`` over all its other fields, else
   ``bad_signature`` — checked before ``result_code`` is believed, so neither a "not found" nor an error code is
   taken from an answer that fails verification; an answer for another appid / mch_id is ``bad_response``;
4. ``result_code FAIL``: ``err_code SYSTEMERROR`` (系统繁忙) is ``maintenance``; ``ORDERNOTEXIST`` is "no such
   order" (:meth:`WxpayClient.order_query` and :meth:`WxpayClient.close_order` say so); any other ``err_code`` is
   ``business_error`` with the ``err_code`` as code.
"""

from __future__ import annotations

import secrets

from monitor.clients.base import GatewayClient, ProbeContext, ProbeFailure, Reply, fetch
from monitor.config.channels import ChannelConfig
from monitor.protocols.wxpay import FAIL, SUCCESS, WxpayXmlError, parse_xml, sign_md5, to_xml, verify

__all__ = ["NOT_EXIST", "WxpayClient", "business_failure"]

NOT_EXIST = "ORDERNOTEXIST"
_MAINTENANCE_CODES = frozenset({"SYSTEMERROR"})


class WxpayClient(GatewayClient):
    """The wire of a channel of ``kind: wxpay_v2`` (credentials ``appid``, ``mch_id``, ``key``)."""

    kind = "wxpay_v2"
    needs = ("appid", "mch_id", "key")
    say = "missing"

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        creds = self.credentials
        self.appid, self.mch_id, self.key = creds["appid"], creds["mch_id"], creds["key"]

    async def call(self, ctx: ProbeContext, path: str, params: dict[str, str], timeout: float) -> dict[str, str]:
        """One signed call; the answer's fields once return_code is SUCCESS and the signature verifies."""
        request: dict[str, object] = {"appid": self.appid.reveal(), "mch_id": self.mch_id.reveal(),
                                      "nonce_str": secrets.token_hex(16), **params}
        request["sign"] = sign_md5(request, self.key.reveal())
        try:
            reply = await fetch(ctx.client, "POST", self.base + path, timeout=timeout,
                                content=to_xml(request).encode("utf-8"),
                                headers={"Content-Type": "text/xml; charset=utf-8"})
        except ProbeFailure as failure:
            raise failure.prefixed(path) from None
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

    async def order_query(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> dict[str, str] | None:
        """``pay/orderquery``: the verified answer's fields (with a ``trade_state``), or None for ORDERNOTEXIST."""
        fields = await self.call(ctx, "pay/orderquery", {"out_trade_no": out_trade_no}, timeout)
        if fields["result_code"] != SUCCESS:
            if fields.get("err_code") == NOT_EXIST:
                return None
            raise business_failure("pay/orderquery", fields)
        if not fields.get("trade_state", ""):
            raise ProbeFailure("bad_response", "pay/orderquery: result_code SUCCESS without a trade_state")
        return fields

    async def close_order(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> bool:
        """``pay/closeorder``: True if closed, False if the gateway never created the order (ORDERNOTEXIST)."""
        fields = await self.call(ctx, "pay/closeorder", {"out_trade_no": out_trade_no}, timeout)
        if fields["result_code"] == SUCCESS:
            return True
        if fields.get("err_code") == NOT_EXIST:
            return False
        raise business_failure("pay/closeorder", fields)


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


def business_failure(path: str, fields: dict[str, str]) -> ProbeFailure:
    """A signed ``result_code FAIL`` answer: maintenance for SYSTEMERROR, else business_error."""
    err_code = fields.get("err_code", "") or FAIL
    des = fields.get("err_code_des", "")[:160]
    outcome = "maintenance" if err_code in _MAINTENANCE_CODES else "business_error"
    return ProbeFailure(outcome, f"{path}: result_code FAIL {err_code} {des}".rstrip(), code=err_code)
