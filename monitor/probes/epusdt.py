"""epusdt (USDT-TRC20, ``assimon/epusdt``) probes: ``query`` and ``test_order``, both create + check-status.

epusdt has no merchant order-query API (protocols.md §3): the only read is the public ``GET
pay/check-status/{trade_id}``, which needs a ``trade_id`` only a create returns and checks no credential. So both
probe types do the same thing: ``POST api/v1/order/create-transaction`` (JSON, signed with the API token as in
§3, a fresh ``order_id`` ``paymon-probe-<random>`` each time since a used ``order_id`` is never re-creatable) for
the smallest amount epusdt accepts, check that a ``trade_id``, a wallet address, a USDT amount and a
``payment_url`` come back, then ask ``pay/check-status/{trade_id}`` and expect status 1 (等待支付, waiting).

Amount: epusdt's validator requires ``amount > 0.01`` CNY, so the probe asks for 0.02 CNY unless
``probes.test_order.amount`` is larger. Nothing is ever paid and nothing can be closed: epusdt has no close API,
the order simply expires (``order_expiration_time``, 10 min by default). The ``notify_url`` is on the reserved
``.invalid`` domain, so a probe order could never notify a shop.

Outcomes: every epusdt reply is HTTP 200 with a ``status_code`` inside and epusdt signs requests, not replies
(so there is no ``bad_signature`` here). ``status_code`` 200 with the expected fields is ``ok``; 401 签名认证错误
(a wrong token) is ``business_error``; 400 with the message 系统错误 is epusdt's generic "system error" answer,
reported as ``maintenance``; any other code (validation failures are 400 with the validator's message, 10002
duplicate, 10005 无可用金额通道, ...) is ``business_error`` with the code and message. A reply without
``status_code`` or without the expected fields, or a fresh order whose status is not 1, is ``bad_response``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from decimal import Decimal
from typing import Any

from monitor.probes.base import Observation, ProbeContext, ProbeFailure, Reply, base_url, fetch, parse_json
from monitor.protocols.epusdt import (
    CODE_OK,
    CODE_SIGNATURE_ERROR,
    CODE_SYSTEM_ERROR,
    ERRNO,
    STATUS_WAIT_PAY,
    sign,
)

__all__ = ["MIN_AMOUNT", "NOTIFY_URL", "EpusdtAdapter"]

#: The smallest amount (CNY) epusdt accepts: its validator wants ``amount > 0.01``.
MIN_AMOUNT = Decimal("0.02")
#: Where a probe order would notify: a reserved domain that never resolves (RFC 2606).
NOTIFY_URL = "https://paymon-probe.invalid/epusdt/notify"
_DEFAULT_TIMEOUT = 10.0


def _left(deadline: float, timeout: float) -> float:
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise ProbeFailure("timeout", f"no complete answer within {timeout:g}s")
    return left


def _data(reply: Reply, what: str) -> dict[str, Any]:
    """The ``data`` object of a ``status_code`` 200 reply; the error outcome of any other reply."""
    doc = parse_json(reply)
    code = doc.get("status_code")
    if isinstance(code, bool) or not isinstance(code, int | str) or not str(code).strip().lstrip("-").isdigit():
        raise ProbeFailure("bad_response", f"{what}: answer has no numeric 'status_code'")
    status = int(str(code).strip())
    message = " ".join(str(doc.get("message", "")).split())[:120]
    if status == CODE_OK:
        data = doc.get("data")
        if not isinstance(data, dict):
            raise ProbeFailure("bad_response", f"{what}: status_code 200 without a 'data' object")
        return data
    if status == CODE_SYSTEM_ERROR and message == ERRNO[CODE_SYSTEM_ERROR]:
        raise ProbeFailure("maintenance", f"{what}: status_code {status} {message}", code=str(status))
    if status == CODE_SIGNATURE_ERROR:
        raise ProbeFailure("business_error", f"{what}: status_code {status} {message} (wrong api token?)",
                           code=str(status))
    raise ProbeFailure("business_error", f"{what}: status_code {status} {message}", code=str(status))


class EpusdtAdapter:
    """Probes for a channel of ``kind: epusdt`` (credentials: ``token``, epusdt's ``api_auth_token``)."""

    kind = "epusdt"
    supports: tuple[str, ...] = ("query", "test_order")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.base = base_url(channel.endpoint)
        if "token" not in channel.credentials:
            raise ValueError(f"channel {channel.id}: epusdt needs credentials token")
        self.token = channel.credentials["token"]
        #: The trade_id of the last order this adapter created.
        self.last_trade_id: str | None = None

    def _amount(self) -> Decimal:
        spec = self.channel.probes.test_order
        return max(MIN_AMOUNT, spec.amount) if spec is not None else MIN_AMOUNT

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        if probe not in self.supports:
            raise ProbeFailure("bad_response", f"probe {probe} is not supported for epusdt")
        spec = self.channel.probes.query if probe == "query" else self.channel.probes.test_order
        timeout = spec.timeout.total_seconds() if spec is not None else _DEFAULT_TIMEOUT
        deadline = asyncio.get_running_loop().time() + timeout
        amount = self._amount()
        order_id = "paymon-probe-" + secrets.token_hex(9)  # 31 characters; epusdt allows 32
        params: dict[str, object] = {"order_id": order_id, "amount": float(amount), "notify_url": NOTIFY_URL}
        params["signature"] = sign(params, self.token.reveal())
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        reply = await fetch(ctx.client, "POST", self.base + "api/v1/order/create-transaction", content=body,
                            timeout=_left(deadline, timeout), headers={"Content-Type": "application/json"})
        data = _data(reply, "create-transaction")
        trade_id = data.get("trade_id")
        if not isinstance(trade_id, str) or not trade_id.isalnum():
            raise ProbeFailure("bad_response", "create-transaction: no 'trade_id' in the answer")
        self.last_trade_id = trade_id
        missing = [name for name in ("token", "payment_url") if not isinstance(data.get(name), str) or not data[name]]
        usdt = data.get("actual_amount")
        if isinstance(usdt, bool) or not isinstance(usdt, int | float) or usdt <= 0:
            missing.append("actual_amount")
        if missing:
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} lacks {', '.join(missing)}")
        if data.get("order_id") not in (None, order_id):
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} is not for our order_id")
        if not str(data["payment_url"]).startswith(("http://", "https://")):
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} has no usable payment_url")

        reply = await fetch(ctx.client, "GET", f"{self.base}pay/check-status/{trade_id}",
                            timeout=_left(deadline, timeout))
        status_data = _data(reply, "check-status")
        status = status_data.get("status")
        if str(status_data.get("trade_id", trade_id)) != trade_id:
            raise ProbeFailure("bad_response", f"check-status: answered for another trade than {trade_id}")
        if isinstance(status, bool) or str(status) != str(STATUS_WAIT_PAY):
            raise ProbeFailure("bad_response", f"check-status: new trade {trade_id} has status {status!r}, "
                                               f"expected {STATUS_WAIT_PAY} (waiting)")
        return Observation(str(CODE_OK), f"created trade {trade_id}: {amount} CNY = {usdt} USDT, status 1 "
                                         "(waiting), left to expire (epusdt cannot close)")
