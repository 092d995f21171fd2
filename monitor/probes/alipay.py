"""Alipay 当面付 (``kind: alipay_f2f``) probes: ``query`` (``alipay.trade.query``) and ``test_order``
(``alipay.trade.precreate`` + ``alipay.trade.close``).

Every call is a form POST to ``{endpoint}gateway.do?charset=utf-8`` with the public parameters of
``reference/protocols.md`` §4, signed RSA2 with the app private key (``monitor.protocols.alipay.sign_rsa2``).
Every answer must carry a ``sign`` over the *raw text* of its response node (AOP ``parserJSONSource``, §4),
verified with the configured Alipay public key; a signature that does not verify is ``bad_signature``, whatever
the answer says. Only an *error* answer may come unsigned (the gateway cannot sign for an unknown ``app_id``):
it still counts as that error, with "unsigned" in the detail, but an unsigned success or "not found" is never
``ok``.

- ``query`` asks for the last order ``test_order`` created on this adapter, else the sentinel
  ``out_trade_no`` :data:`SENTINEL`. ``ok``: ``code 10000`` with a ``trade_status`` (the status is in the detail),
  or ``40004 / ACQ.TRADE_NOT_EXIST`` (the expected answer for the sentinel, and what the real gateway says for
  an order nobody scanned, §4).
- ``test_order`` precreates ``probes.test_order.amount`` (Alipay's minimum, and the default, is 0.01 CNY; a
  smaller amount is raised to it) and checks that a ``qr_code`` comes back. Then, if ``probes.test_order.close``,
  it closes the trade in a ``finally`` — unless the gateway answered the precreate with a verified error (no
  trade exists) or could not be reached at all. A failed close is added to the detail and, when the check was
  ``ok``, becomes the outcome. Nothing is ever paid.

Gateway errors: ``code 20000`` (``isp.unknow-error``, Alipay's "Service Currently Unavailable" / 系统繁忙) and
``ACQ.SYSTEM_ERROR`` (系统错误, "call again") are ``maintenance``; every other code is ``business_error`` with
``code`` = ``"<code>/<sub_code>"`` (a wrong app key is ``40002/isv.invalid-signature``, a wrong app id
``40002/isv.invalid-app-id``) and the gateway's ``msg`` / ``sub_msg`` in the detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.config import ChannelConfig
from monitor.probes.base import (
    Observation,
    ProbeContext,
    ProbeFailure,
    base_url,
    fetch,
    finish_test_order,
    new_out_trade_no,
    parse_json,
)
from monitor.protocols.alipay import (
    CODE_OK,
    CODE_UNAVAILABLE,
    SIGN_TYPE_RSA2,
    format_alipay_time,
    format_amount,
    load_private_key,
    load_public_key,
    response_node_name,
    sign_rsa2,
    verify_response,
)

__all__ = ["MIN_AMOUNT", "SENTINEL", "AlipayAdapter"]

#: An ``out_trade_no`` no shop ever uses; the gateway must say it does not exist.
SENTINEL = "paymon-probe-sentinel"
#: The smallest ``total_amount`` Alipay accepts (CNY).
MIN_AMOUNT = Decimal("0.01")
PRECREATE, QUERY, CLOSE = "alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close"
NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
_MAINTENANCE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR"})
_REQUIRED = ("app_id", "private_key", "alipay_public_key")


@dataclass(frozen=True, slots=True)
class _Answer:
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


class AlipayAdapter:
    """Probes for a channel of ``kind: alipay_f2f`` (credentials ``app_id``, ``private_key``,
    ``alipay_public_key``)."""

    kind = "alipay_f2f"
    supports: tuple[str, ...] = ("query", "test_order")

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        missing = [name for name in _REQUIRED if not channel.credentials.get(name)]
        if missing:
            raise ValueError(f"channel {channel.id}: alipay_f2f needs credentials {', '.join(missing)}")
        self.url = base_url(channel.endpoint) + "gateway.do"
        creds = channel.credentials
        self.app_id = creds["app_id"]
        try:
            self._private_key: rsa.RSAPrivateKey = load_private_key(creds["private_key"].reveal())
        except ValueError:
            raise ValueError(f"channel {channel.id}: private_key is not an RSA private key (PEM or base64)") from None
        try:
            self._public_key: rsa.RSAPublicKey = load_public_key(creds["alipay_public_key"].reveal())
        except ValueError:
            raise ValueError(f"channel {channel.id}: alipay_public_key is not an RSA public key") from None
        #: The ``out_trade_no`` of the last order ``test_order`` created; ``query`` asks for it.
        self.last_order: str | None = None

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe == "query":
            return await self._query(ctx)
        if probe == "test_order":
            return await self._test_order(ctx)
        raise ProbeFailure("bad_response", f"probe {probe} is not supported for alipay_f2f")

    # ---- probes ------------------------------------------------------------------------------------

    async def _query(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.query
        timeout = spec.timeout.total_seconds() if spec is not None else 5.0
        out_trade_no = self.last_order or SENTINEL
        which = "last test order" if self.last_order else "sentinel order"
        answer = await self._call(ctx, QUERY, {"out_trade_no": out_trade_no}, timeout)
        if answer.code == CODE_OK and answer.signed:
            status = answer.node.get("trade_status")
            if not isinstance(status, str) or not status:
                raise ProbeFailure("bad_response", "alipay.trade.query: code 10000 without a trade_status")
            return Observation(CODE_OK, f"{which}: 10000 trade_status {status[:40]}")
        if answer.code == "40004" and answer.sub_code == NOT_EXIST and answer.signed:
            return Observation(f"40004/{NOT_EXIST}", f"{which}: 40004 {NOT_EXIST} (not found, as expected)")
        if answer.code == CODE_OK or answer.sub_code == NOT_EXIST:
            raise ProbeFailure("bad_signature", f"alipay.trade.query: unsigned {answer.code} answer")
        raise answer.failure()

    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = spec.timeout.total_seconds() if spec is not None else 10.0
        wanted = spec.amount if spec is not None else MIN_AMOUNT
        amount = max(wanted.quantize(MIN_AMOUNT, rounding=ROUND_HALF_UP), MIN_AMOUNT)
        out_trade_no = new_out_trade_no(ctx)
        may_exist = False
        result: Observation | ProbeFailure
        close_failure: ProbeFailure | None = None
        closed = False
        biz = {"out_trade_no": out_trade_no, "total_amount": format_amount(amount), "subject": "paymon probe",
               "product_code": "FACE_TO_FACE_PAYMENT"}
        try:
            may_exist = True
            answer = await self._call(ctx, PRECREATE, biz, timeout)
            if answer.code != CODE_OK:
                may_exist = False  # the gateway refused the order: there is nothing to close
                raise answer.failure()
            result = self._created(answer, out_trade_no, amount)
        except ProbeFailure as failure:
            result = failure
            if failure.outcome == "connect_error":  # never reached the gateway
                may_exist = False
        finally:
            if may_exist and (spec is None or spec.close):
                try:
                    closed = await self._close(ctx, out_trade_no, timeout)
                except ProbeFailure as failure:
                    close_failure = failure
        return finish_test_order(result, close_failure, closed)

    def _created(self, answer: _Answer, out_trade_no: str, amount: Decimal) -> Observation:
        """Judge a 10000 precreate answer: signed, with a ``qr_code`` URL."""
        if not answer.signed:
            raise ProbeFailure("bad_signature", "alipay.trade.precreate: unsigned success answer")
        qr_code = answer.node.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code.startswith(("https://", "http://")):
            raise ProbeFailure("bad_response", "alipay.trade.precreate: no qr_code URL in a 10000 answer")
        self.last_order = out_trade_no
        return Observation(CODE_OK, f"precreate {format_amount(amount)} CNY: qr_code {qr_code[:60]}")

    async def _close(self, ctx: ProbeContext, out_trade_no: str, timeout: float) -> bool:
        """Close the probe trade; True if closed, False if the gateway never created it."""
        answer = await self._call(ctx, CLOSE, {"out_trade_no": out_trade_no}, timeout)
        if answer.code == CODE_OK and answer.signed:
            return True
        if answer.code == "40004" and answer.sub_code == NOT_EXIST and answer.signed:
            return False
        if answer.code == CODE_OK:
            raise ProbeFailure("bad_signature", "alipay.trade.close: unsigned success answer")
        raise answer.failure()

    # ---- the wire ----------------------------------------------------------------------------------

    async def _call(self, ctx: ProbeContext, method: str, biz: dict[str, str], timeout: float) -> _Answer:
        """One signed gateway call; returns its response node once the signature checks out (§4)."""
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
            raise ProbeFailure(failure.outcome, f"{method}: {failure.detail}", code=failure.code) from None
        node = doc.get(response_node_name(method))
        if not isinstance(node, dict):
            node = doc.get("error_response")
        if not isinstance(node, dict):
            raise ProbeFailure("bad_response", f"{method}: no {response_node_name(method)} object in the answer")
        answer = _Answer(method, node, signed="sign" in doc and doc["sign"] not in (None, ""))
        if not answer.code:
            raise ProbeFailure("bad_response", f"{method}: response node has no code")
        if answer.signed:
            text = reply.body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if not verify_response(text, method, self._public_key):
                raise ProbeFailure("bad_signature", f"{method}: response signature does not verify ({answer.code})")
        return answer
