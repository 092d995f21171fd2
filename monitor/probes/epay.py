"""epay V1 (彩虹易支付) probes: ``query`` asks ``api.php?act=order`` for a sentinel order.

The merchant key travels in the query string (the protocol's design, protocols.md §2.5) and real servers echo it
back (§9 Q7): every detail passes the redactor. Real servers answer with ``text/html`` content types (§9 Q2) and
send numbers as strings on older PHP (§9 Q3), so the probe parses JSON whatever the header says and compares codes
as text.

Outcomes: a well-formed answer with code 1 (found) or -1 (``订单号不存在``, the expected answer for the sentinel)
is ``ok``; any other code is ``business_error`` carrying the gateway's code and message (bad key / pid are -2/-3).
"""

from __future__ import annotations

from typing import Any

from monitor.probes.base import Observation, ProbeContext, ProbeFailure, fetch, parse_json

__all__ = ["SENTINEL", "EpayAdapter"]

#: An out_trade_no no shop ever uses; the gateway must say it does not exist.
SENTINEL = "paymon-probe-sentinel"


def _code(doc: dict[str, Any]) -> str:
    return str(doc.get("code", "")).strip()


class EpayAdapter:
    """Probes for a channel of ``kind: epay``."""

    kind = "epay"
    supports = ("query",)

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        base = str(channel.endpoint)
        self.base = base if base.endswith("/") else base + "/"
        creds = channel.credentials
        if "pid" not in creds or "key" not in creds:
            raise ValueError(f"channel {channel.id}: epay needs credentials pid and key")
        self.pid = creds["pid"]
        self.key = creds["key"]

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe != "query":
            raise ProbeFailure("bad_response", f"probe {probe} is not supported for epay yet")
        spec = self.channel.probes.query
        timeout = spec.timeout.total_seconds() if spec is not None else 5.0
        params = {"act": "order", "pid": self.pid.reveal(), "key": self.key.reveal(), "out_trade_no": SENTINEL}
        reply = await fetch(ctx.client, "GET", self.base + "api.php", params=params, timeout=timeout)
        doc = parse_json(reply)
        code = _code(doc)
        msg = str(doc.get("msg", ""))[:120]
        if code == "-1" or (code == "1" and str(doc.get("out_trade_no", "")) == SENTINEL):
            return Observation(code, f"HTTP {reply.status}, code {code} {msg}".strip())
        if code == "":
            raise ProbeFailure("bad_response", "answer has no 'code' field")
        raise ProbeFailure("business_error", f"code {code}: {msg}", code=code)
