"""The shop side of epusdt (``epusdt``), as dujiaoka's ``EpusdtController`` does it.

Opening an order: POST JSON ``{amount: (float) price, order_id, redirect_url, notify_url, signature}`` to the
channel's ``api/v1/order/create-transaction``, signed with the API token (sorted ``k=v``, MD5); anything but
``status_code`` 200 fails, and the buyer goes to ``data.payment_url``. epusdt replies are not signed. Notify:
``POST /pay/epusdt/notify_url`` with JSON, the order looked up by ``order_id`` (unknown: ``fail``), the signature
checked over the whole object (``status`` is not looked at), then the order completed with ``amount`` (CNY) and
``trade_id``: ``ok``. A bad signature is ``fail``; ``completedOrder`` throwing (amount mismatch, already completed)
escapes dujiaoka's handler, so that is HTTP 500 ``fail``. Either way epusdt counts it as not acknowledged.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from monitor.protocols.epusdt import ACK_BODY, CODE_OK, sign, verify
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder, bc_amount

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["NOTIFY_PATH", "RETURN_PATH", "EpusdtShop"]

NOTIFY_PATH = "/pay/epusdt/notify_url"
RETURN_PATH = "/pay/epusdt/return_url"


class EpusdtShop:
    """epusdt for the simulated shop. Channel credentials: ``token`` (the ``api_auth_token``, dujiaoka's
    ``merchant_id``); the API URL is the channel's endpoint plus the real path."""

    kind = "epusdt"
    notify_path = NOTIFY_PATH
    notify_methods = ("POST",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Create the transaction; return its ``trade_id``."""
        params: dict[str, object] = {
            "amount": float(order.amount),
            "order_id": order.order_id,
            "redirect_url": f"{self.shop.base_url}{RETURN_PATH}?order_id={order.order_id}",
            "notify_url": self.shop.notify_url_for(self.kind),
        }
        params["signature"] = sign(params, channel.credentials["token"])
        reply = await self.shop.client.post(channel.endpoint + "api/v1/order/create-transaction",
                                            content=json.dumps(params).encode(),
                                            headers={"Content-Type": "application/json"})
        if reply.status_code != 200:
            raise OpenFailed(f"http_error: {reply.status_code}")
        try:
            body = reply.json()
        except ValueError:
            raise OpenFailed("bad_response: not JSON") from None
        if not isinstance(body, dict):
            raise OpenFailed("bad_response: not a JSON object")
        if body.get("status_code") != CODE_OK:
            raise OpenFailed(f"business_error: {body.get('status_code')} {body.get('message', '')}".rstrip())
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("trade_id"), str) or not data["trade_id"]:
            raise OpenFailed("bad_response: no trade_id")
        trade_id: str = data["trade_id"]
        order.payurl = str(data.get("payment_url") or "") or None
        return trade_id

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        return {"token": gateway.channel(channel_id).token}

    async def notify(self, request: Request) -> Response:
        try:
            params = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse("fail")
        if not isinstance(params, dict):
            return PlainTextResponse("fail")
        order = self.shop.order(str(params.get("order_id", "")))
        channel = self.shop.channels.get(order.channel) if order is not None else None
        if order is None or channel is None or channel.kind != self.kind:
            return PlainTextResponse("fail")
        trade_id = params.get("trade_id")
        result = self.shop.callback(order, verified=verify(params, channel.credentials["token"]),
                                    trade_no=str(trade_id) if trade_id else None,
                                    amount=bc_amount(params.get("amount")))
        if result == "completed":
            return PlainTextResponse(ACK_BODY)
        if result == "bad_signature":
            return PlainTextResponse("fail")
        return PlainTextResponse("fail", status_code=500)  # completedOrder() threw


