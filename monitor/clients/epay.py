"""The epay V1 (彩虹易支付, MD5) client: ``api.php`` reads and signed ``mapi.php`` orders.

- ``api.php`` is a GET with ``act``, ``pid`` and the merchant ``key`` in the query: the key travels in the
  URL and is echoed in ``act=query``/``act=settle``, so details are built from chosen fields only, never
  from the body, and the redactor runs over them anyway.
- ``mapi.php`` is a form POST of an order signed MD5 with the key.

Answers: V1 replies are not signed, so there is no ``bad_signature``. A -1 whose message says 维护/繁忙 (the
simulator's ``{"code":-1,"msg":"系统维护中，请稍后再试"}``) is ``maintenance``; other codes are ``business_error``
with the gateway's code and message (auth: EP-old -2 KEY校验失败 / -3 PID不存在, EP-new -3; bad mapi sign: EP-old
-1, EP-new -3); a refusal saying 封禁 (商户已封禁，无法支付！ for a banned merchant) is ``business_error``
with code ``merchant_banned``. Real servers answer with ``text/html`` and may send numbers as strings:
JSON is parsed whatever the header, codes compared as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from monitor.clients.base import GatewayClient, ProbeContext, ProbeFailure, fetch, parse_json
from monitor.config.channels import ChannelConfig
from monitor.models import MERCHANT_BANNED
from monitor.protocols import epay as v1

__all__ = ["BANNED_WORD", "NOT_FOUND", "EpayClient", "banned", "fail_on_code", "is_maintenance", "is_not_found",
           "reply_code", "reply_msg"]

#: Messages of the -1 that means "no such order" (EP-old and EP-new; the V2 API words it 订单不存在 too).
NOT_FOUND = ("订单号不存在", "订单不存在")
#: What every epay refusal for a banned merchant says (商户已封禁，无法支付！).
BANNED_WORD = "封禁"
_MAINTENANCE_WORDS = ("维护", "繁忙", "maintenance")


def banned(what: str, detail: str) -> ProbeFailure:
    """The failure for a merchant the gateway has banned: ``business_error`` with code
    :data:`~monitor.models.MERCHANT_BANNED`, which the ``merchant_banned`` signal reads."""
    return ProbeFailure("business_error", f"{what}: merchant banned at the gateway ({detail})", code=MERCHANT_BANNED)


def is_maintenance(msg: str) -> bool:
    """Whether an error message is the gateway's "under maintenance / busy" answer."""
    return any(word in msg.lower() for word in _MAINTENANCE_WORDS)


def reply_code(doc: Mapping[str, Any]) -> str:
    """The answer's ``code`` as text (numbers may come as strings); "" when there is none."""
    return str(doc.get("code", "")).strip()


def reply_msg(doc: Mapping[str, Any]) -> str:
    """The answer's ``msg`` on one line, at most 120 characters."""
    return " ".join(str(doc.get("msg") or "").split())[:120]


def fail_on_code(doc: Mapping[str, Any], what: str) -> ProbeFailure:
    """The failure for an unexpected reply code: bad_response (no code), maintenance, or business_error."""
    code, msg = reply_code(doc), reply_msg(doc)
    if code == "":
        return ProbeFailure("bad_response", f"{what}: answer has no 'code' field")
    if is_maintenance(msg):
        return ProbeFailure("maintenance", f"{what}: gateway under maintenance: code {code} {msg}".strip(), code=code)
    if BANNED_WORD in msg:
        return banned(what, f"code {code} {msg}")
    return ProbeFailure("business_error", f"{what}: code {code}: {msg}", code=code)


def is_not_found(doc: Mapping[str, Any]) -> bool:
    """Whether an error answer is epay's "no such order" (code -1, 订单号不存在), not maintenance or anything else."""
    msg = str(doc.get("msg") or "")
    return reply_code(doc) == "-1" and any(m in msg for m in NOT_FOUND) and not is_maintenance(msg)


class EpayClient(GatewayClient):
    """The wire of a channel of ``kind: epay`` (credentials ``pid``, ``key``)."""

    kind = "epay"
    needs = ("pid", "key")

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        self.pid, self.key = self.credentials["pid"], self.credentials["key"]
        #: The zone epay writes its wall-clock times (``addtime``, ``endtime``) in.
        self.tz = ZoneInfo(channel.timezone)

    async def api(self, ctx: ProbeContext, timeout: float, act: str, **extra: str) -> tuple[int, dict[str, Any]]:
        """One ``api.php`` GET (the key in the query); the HTTP status and the decoded object."""
        params = {"act": act, "pid": self.pid.reveal(), "key": self.key.reveal(), **extra}
        reply = await fetch(ctx.client, "GET", self.base + "api.php", params=params, timeout=timeout)
        return reply.status, parse_json(reply)

    async def mapi(self, ctx: ProbeContext, timeout: float, order: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """POST ``order`` to ``mapi.php`` with ``pid``, signed MD5; the HTTP status and the object."""
        params = {"pid": self.pid.reveal(), **order}
        params["sign"] = v1.sign_md5(params, self.key.reveal())
        params["sign_type"] = v1.SIGN_TYPE_MD5
        reply = await fetch(ctx.client, "POST", self.base + "mapi.php", data=params, timeout=timeout)
        return reply.status, parse_json(reply)
