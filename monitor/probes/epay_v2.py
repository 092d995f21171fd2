"""epay V2 (EP-new's RSA API) probes: ``query``, ``test_order`` and ``balance``.

Every request is a form POST carrying ``pid``, ``timestamp`` (seconds, from the probe clock; the server rejects
more than ±300 s of skew) and an RSA signature (SHA256withRSA with the merchant private key,
:mod:`monitor.protocols.epay_v2`, protocols.md §2.7). Successful replies (code 0) are signed by the platform: the
probe verifies every one with ``platform_public_key`` over all top-level scalar fields (§9 Q13) and a reply that
does not verify is ``bad_signature``, never ``ok``. Error replies are unsigned (``echojsonmsg``).

- ``query``: ``api/pay/query`` for the last order ``test_order`` created here, else a sentinel ``out_trade_no``.
  A signed code 0 about the asked order is ``ok``; so is -1 订单号不存在 (the expected answer for the sentinel).
- ``test_order``: ``api/pay/create`` (``method=web``, ``device=pc``, ``type=alipay``, ``probes.test_order.amount``
  printed as PHP does, a fresh ``paymon-probe-…`` ``out_trade_no``, loopback notify/return URLs); ``ok`` is a
  signed code 0 with ``trade_no``, ``pay_type`` and ``pay_info``. Never paid; epay cannot close an order (it
  stays unpaid until the site purges it), which the detail says when ``close`` is set.
- ``balance``: ``api/merchant/info``; the value is ``money`` (the unsettled balance). V2 has no settlement list
  (V1's ``act=settle`` has no V2 counterpart, §2.7), so the last settlement time is unknown: the detail says so
  and reports ``settle_status`` 0 (settlement switched off) as a stall. A banned merchant (``status`` 0) is
  ``business_error``.

Outcomes: a message saying 维护/繁忙 (the simulator's ``{"code":-1,"msg":"系统维护中"}``) is ``maintenance``; any
other error code is ``business_error`` with the gateway's code and message (§9 Q10: -1 商户不存在！ for an unknown
pid, -3 signature/auth/timestamp, -4 no parameters, -5 unknown method). JSON is parsed whatever the
Content-Type (``api/pay/create`` answers text/html, §9 Q2) and numbers may be strings (§9 Q3).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.config.channels import ChannelConfig, TestOrderProbe
from monitor.probes.base import Observation, ProbeContext, ProbeFailure, base_url, fetch, new_out_trade_no, parse_json
from monitor.probes.epay import (
    PLACEHOLDER_URL,
    SENTINEL,
    decimal_field,
    fail_on_code,
    is_maintenance,
    probe_timeout,
)
from monitor.protocols import epay as v1
from monitor.protocols import epay_v2 as v2

__all__ = ["EpayV2Adapter"]

_NOT_FOUND = ("订单号不存在", "订单不存在")


class EpayV2Adapter:
    """Probes for a channel of ``kind: epay_v2``."""

    kind: str = "epay_v2"
    supports: tuple[str, ...] = ("query", "test_order", "balance")

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        creds = channel.credentials
        missing = [n for n in ("pid", "private_key", "platform_public_key") if n not in creds]
        if missing:
            raise ValueError(f"channel {channel.id}: epay_v2 needs credentials pid, private_key and "
                             f"platform_public_key (missing: {', '.join(missing)})")
        if not channel.endpoint:
            raise ValueError(f"channel {channel.id}: epay_v2 needs an endpoint")
        self.base = base_url(channel.endpoint)
        self.pid = creds["pid"]
        try:
            self._private: rsa.RSAPrivateKey = v2.load_private_key(creds["private_key"].reveal())
        except (ValueError, TypeError):
            raise ValueError(f"channel {channel.id}: credential private_key is not an RSA private key "
                             "(PEM or bare base64 PKCS#8)") from None
        try:
            self._platform: rsa.RSAPublicKey = v2.load_public_key(creds["platform_public_key"].reveal())
        except (ValueError, TypeError):
            raise ValueError(f"channel {channel.id}: credential platform_public_key is not an RSA public key "
                             "(PEM or bare base64)") from None
        #: The out_trade_no of the last order test_order created, which query then asks for.
        self.last_order: str | None = None

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe == "query":
            return await self._query(ctx)
        if probe == "test_order":
            return await self._test_order(ctx)
        if probe == "balance":
            return await self._balance(ctx)
        raise ProbeFailure("bad_response", f"probe {probe} is not supported for epay_v2")

    async def _call(self, ctx: ProbeContext, method: str, timeout: float,
                    params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST a signed ``api/<method>``; the HTTP status and the decoded reply, its signature verified when
        the code is 0 (``bad_signature`` otherwise). Error replies are returned unverified (they are unsigned)."""
        body = {"pid": self.pid.reveal(), **params, "timestamp": str(int(ctx.clock.now().timestamp()))}
        body["sign"] = v2.sign_rsa(body, self._private)
        body["sign_type"] = v2.SIGN_TYPE_RSA
        reply = await fetch(ctx.client, "POST", self.base + "api/" + method, data=body, timeout=timeout)
        doc = parse_json(reply)
        if str(doc.get("code", "")).strip() == str(v2.CODE_OK):
            sign = doc.get("sign")
            if not isinstance(sign, str) or not sign:
                raise ProbeFailure("bad_signature", f"api/{method}: code 0 reply without a signature", code="0")
            if not v2.verify_rsa(doc, sign, self._platform):
                raise ProbeFailure("bad_signature",
                                   f"api/{method}: reply signature does not verify with the platform key", code="0")
        return reply.status, doc

    async def _query(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.query, 5.0)
        wanted = self.last_order or SENTINEL
        status, doc = await self._call(ctx, "pay/query", timeout, {"out_trade_no": wanted})
        code = str(doc.get("code", "")).strip()
        msg = " ".join(str(doc.get("msg") or "").split())[:120]
        if code == "0":
            got = str(doc.get("out_trade_no", ""))
            if got != wanted:
                raise ProbeFailure("bad_response", f"api/pay/query: asked for {wanted}, the answer is about "
                                   f"{got[:40]!r}")
            state = v1.coerce_int(doc.get("status"))
            name = v1.STATUS_NAMES.get(state, str(state)) if state is not None else "?"
            return Observation(code, f"HTTP {status}, code 0 (signed): order {wanted} found ({name})")
        if code == "-1" and any(m in msg for m in _NOT_FOUND) and not is_maintenance(msg):
            note = "" if wanted == SENTINEL else f" (the last test order {wanted} is unknown to the gateway)"
            return Observation(code, f"HTTP {status}, code -1 {msg}{note}")
        raise fail_on_code(doc, "api/pay/query")

    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order or TestOrderProbe()
        out_trade_no = new_out_trade_no(ctx)
        money = v1.format_money(spec.amount)
        params = {
            "method": "web", "device": "pc", "type": "alipay", "out_trade_no": out_trade_no,
            "notify_url": PLACEHOLDER_URL, "return_url": PLACEHOLDER_URL, "name": "paymon probe",
            "money": money, "clientip": "127.0.0.1",
        }
        status, doc = await self._call(ctx, "pay/create", spec.timeout.total_seconds(), params)
        if str(doc.get("code", "")).strip() != "0":
            raise fail_on_code(doc, "api/pay/create")
        trade_no = str(doc.get("trade_no") or "").strip()
        pay_type = str(doc.get("pay_type") or "").strip()
        if not trade_no:
            raise ProbeFailure("bad_response", "api/pay/create: code 0 without a trade_no")
        if not pay_type or not str(doc.get("pay_info") or "").strip():
            raise ProbeFailure("bad_response", f"api/pay/create: order {trade_no} has no pay_type/pay_info")
        self.last_order = out_trade_no
        note = "; epay cannot close orders, it stays unpaid until the site purges it" if spec.close else ""
        return Observation("0", f"HTTP {status}, code 0 (signed): order {out_trade_no} (trade_no {trade_no}, "
                                f"{money}) created, pay_type {pay_type[:16]}{note}")

    async def _balance(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.balance, 5.0)
        status, doc = await self._call(ctx, "merchant/info", timeout, {})
        if str(doc.get("code", "")).strip() != "0":
            raise fail_on_code(doc, "api/merchant/info")
        if "money" not in doc:
            raise ProbeFailure("bad_response", "api/merchant/info: answer has no 'money' field")
        money = decimal_field(doc["money"], "api/merchant/info money")
        if v1.coerce_int(doc.get("status")) == 0:
            raise ProbeFailure("business_error", f"api/merchant/info: merchant is banned (status 0), balance {money}",
                               code="status=0")
        parts = [f"HTTP {status}, unsettled balance {money}",
                 "last settlement unknown (the V2 API has no settlement list)"]
        if v1.coerce_int(doc.get("pay_status")) == 0:
            parts.append("payments are switched off for the merchant (pay_status 0)")
        if v1.coerce_int(doc.get("settle_status")) == 0:
            parts.append(f"settlement STALL: settlement is switched off (settle_status 0) with {money} waiting"
                         if money > 0 else "settlement is switched off (settle_status 0)")
        return Observation("0", "; ".join(parts), float(money))
