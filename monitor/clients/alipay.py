"""The Alipay 当面付 (``kind: alipay_f2f``) client: RSA2-signed gateway calls with verified answers.

Every call is a form POST to ``{endpoint}gateway.do?charset=utf-8`` with Alipay's public parameters, signed RSA2
with the app private key (:func:`monitor.protocols.alipay.sign_rsa2`). Every answer must carry a ``sign`` over the
*raw text* of its response node (AOP ``parserJSONSource``), verified with the configured Alipay public key; a
signature that does not verify is ``bad_signature``, whatever the answer says. Only an *error* answer may come
unsigned (the gateway cannot sign for an unknown ``app_id``): it still counts as that error, with "unsigned" in
the detail, but an unsigned success or "not found" is never believed.

Gateway errors: ``code 20000`` (``isp.unknow-error``, Alipay's "Service Currently Unavailable" / 系统繁忙) and
``ACQ.SYSTEM_ERROR`` (系统错误, "call again") are ``maintenance``; every other code is ``business_error`` with
``code`` = ``"<code>/<sub_code>"`` (a wrong app key is ``40002/isv.invalid-signature``, a wrong app id
``40002/isv.invalid-app-id``) and the gateway's ``msg`` / ``sub_msg`` in the detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.clients.base import GatewayClient, ProbeContext, ProbeFailure, fetch, parse_json
from monitor.config.channels import ChannelConfig
from monitor.protocols.alipay import (
    CODE_BUSINESS_FAILED,
    CODE_OK,
    CODE_UNAVAILABLE,
    SIGN_TYPE_RSA2,
    format_alipay_time,
    load_private_key,
    load_public_key,
    response_node_name,
    sign_rsa2,
    verify_response,
)

__all__ = ["CLOSE", "NOT_EXIST", "PRECREATE", "QUERY", "AlipayAnswer", "AlipayClient"]

PRECREATE, QUERY, CLOSE = "alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close"
NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
_MAINTENANCE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR"})


@dataclass(frozen=True, slots=True)
class AlipayAnswer:
    """A response node that passed the signature check (or an error that came unsigned)."""

    method: str
    node: dict[str, Any]
    signed: bool

    @property
    def code(self) -> str:
        return str(self.node.get("code", "")).strip()

    @property
    def sub_code(self) -> str:
        return str(self.node.get("sub_code", "") or "").strip()

    @property
    def not_exist(self) -> bool:
        """Whether this is the signed ``40004 / ACQ.TRADE_NOT_EXIST`` (no such trade)."""
        return self.code == CODE_BUSINESS_FAILED and self.sub_code == NOT_EXIST and self.signed

    def failure(self) -> ProbeFailure:
        """This error answer as a maintenance or business_error failure."""
        code, sub = self.code, self.sub_code
        # isv.invalid-signature's sub_msg ends in "验签字符串为：" + the whole signed request: keep the sentence only.
        sub_msg = str(self.node.get("sub_msg", "") or "").split("：", 1)[0]
        msg = f"{self.node.get('msg', '') or ''} {sub_msg}".strip()
        unsigned = "" if self.signed else " (unsigned)"
        detail = f"{self.method}: {code}{'/' + sub if sub else ''} {msg[:160]}{unsigned}".strip()
        outcome = "maintenance" if code == CODE_UNAVAILABLE or sub in _MAINTENANCE_SUB_CODES else "business_error"
        return ProbeFailure(outcome, detail, code=f"{code}/{sub}" if sub else code)


class AlipayClient(GatewayClient):
    """The wire of a channel of ``kind: alipay_f2f`` (credentials ``app_id``, ``private_key``,
    ``alipay_public_key``)."""

    kind = "alipay_f2f"
    needs = ("app_id", "private_key", "alipay_public_key")
    say = "missing"

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        self.url = self.base + "gateway.do"
        self.app_id = self.credentials["app_id"]
        self._private_key: rsa.RSAPrivateKey = self.load_credential(
            "private_key", load_private_key, "private_key is not an RSA private key (PEM or base64)")
        self._public_key: rsa.RSAPublicKey = self.load_credential(
            "alipay_public_key", load_public_key, "alipay_public_key is not an RSA public key")

    async def call(self, ctx: ProbeContext, method: str, biz: dict[str, str], timeout: float) -> AlipayAnswer:
        """One signed gateway call; returns its response node once the signature checks out."""
        params = {
            "app_id": self.app_id.reveal(),
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": SIGN_TYPE_RSA2,
            "timestamp": format_alipay_time(ctx.clock.now()),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = sign_rsa2(params, self._private_key)
        try:
            reply = await fetch(ctx.client, "POST", self.url, params={"charset": "utf-8"}, data=params,
                                timeout=timeout)
            doc = parse_json(reply)
        except ProbeFailure as failure:
            raise failure.prefixed(method) from None
        node = doc.get(response_node_name(method))
        if not isinstance(node, dict):
            node = doc.get("error_response")
        if not isinstance(node, dict):
            raise ProbeFailure("bad_response", f"{method}: no {response_node_name(method)} object in the answer")
        answer = AlipayAnswer(method, node, signed="sign" in doc and doc["sign"] not in (None, ""))
        if not answer.code:
            raise ProbeFailure("bad_response", f"{method}: response node has no code")
        if answer.signed:
            text = reply.body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if not verify_response(text, method, self._public_key):
                raise ProbeFailure("bad_signature", f"{method}: response signature does not verify ({answer.code})")
        return answer

    async def query(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> dict[str, Any] | None:
        """``alipay.trade.query``: the verified ``10000`` node (it has a ``trade_status``), or None for the verified
        ``40004 / ACQ.TRADE_NOT_EXIST``; an unsigned success or "not found" is ``bad_signature``."""
        answer = await self.call(ctx, QUERY, {"out_trade_no": out_trade_no}, timeout)
        if answer.not_exist:
            return None
        if answer.code == CODE_OK or answer.sub_code == NOT_EXIST:
            if not answer.signed:
                raise ProbeFailure("bad_signature", f"{QUERY}: unsigned {answer.code} answer")
        if answer.code != CODE_OK:
            raise answer.failure()
        status = answer.node.get("trade_status")
        if not isinstance(status, str) or not status:
            raise ProbeFailure("bad_response", f"{QUERY}: code 10000 without a trade_status")
        return answer.node

    async def close(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> bool:
        """``alipay.trade.close``: True if closed, False if the gateway never created the trade."""
        answer = await self.call(ctx, CLOSE, {"out_trade_no": out_trade_no}, timeout)
        if answer.code == CODE_OK and answer.signed:
            return True
        if answer.not_exist:
            return False
        if answer.code == CODE_OK:
            raise ProbeFailure("bad_signature", f"{CLOSE}: unsigned success answer")
        raise answer.failure()
