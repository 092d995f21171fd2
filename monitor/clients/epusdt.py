"""The epusdt (USDT-TRC20, ``assimon/epusdt``) client: signed order creation and the public status check.

epusdt has no merchant order-query API: the only read is the public ``GET pay/check-status/{trade_id}``, which
needs a ``trade_id`` only a create returns and checks no credential. ``POST api/v1/order/create-transaction`` is
JSON signed with the API token.

Answers: every epusdt reply is HTTP 200 with a ``status_code`` inside and epusdt signs requests, not replies (so
there is no ``bad_signature`` here). ``status_code`` 200 with a ``data`` object is a success; 401 签名认证错误 (a
wrong token) is ``business_error``; 400 with the message 系统错误 is epusdt's generic "system error" answer,
reported as ``maintenance``; any other code (validation failures are 400 with the validator's message, 10002
duplicate, 10005 无可用金额通道, ...) is ``business_error`` with the code and message. A reply without a numeric
``status_code`` or without ``data`` is ``bad_response``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from monitor.clients.base import Deadline, GatewayClient, ProbeContext, ProbeFailure, Reply, fetch, parse_json
from monitor.protocols.epusdt import CODE_OK, CODE_SIGNATURE_ERROR, CODE_SYSTEM_ERROR, ERRNO, sign

__all__ = ["EpusdtClient"]


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


class EpusdtClient(GatewayClient):
    """The wire of a channel of ``kind: epusdt`` (credentials: ``token``, epusdt's ``api_auth_token``)."""

    kind = "epusdt"
    needs = ("token",)

    async def create_transaction(self, ctx: ProbeContext, order_id: str, amount: Decimal, notify_url: str,
                                 deadline: Deadline) -> dict[str, Any]:
        """``POST api/v1/order/create-transaction`` signed with the token; the ``data`` of the answer."""
        params: dict[str, object] = {"order_id": order_id, "amount": float(amount), "notify_url": notify_url}
        params["signature"] = sign(params, self.credentials["token"].reveal())
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        reply = await fetch(ctx.client, "POST", self.base + "api/v1/order/create-transaction", content=body,
                            timeout=deadline.left(), headers={"Content-Type": "application/json"})
        return _data(reply, "create-transaction")

    async def check_status(self, ctx: ProbeContext, trade_id: str, deadline: Deadline) -> dict[str, Any]:
        """``GET pay/check-status/{trade_id}`` (public, unsigned); the ``data`` of the answer."""
        reply = await fetch(ctx.client, "GET", f"{self.base}pay/check-status/{trade_id}", timeout=deadline.left())
        return _data(reply, "check-status")
