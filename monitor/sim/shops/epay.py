"""The shop side of epay V1, as dujiaoka's ``YipayController`` does it.

Opening an order: POST the MD5-signed form to the channel's ``mapi.php`` (the API flow; dujiaoka itself renders
a form to ``submit.php``, which the simulator's buyers skip). Notify: ``GET /pay/yipay/notify_url``, look the
order up by ``out_trade_no``, check the signature (dujiaoka does not check ``trade_status``), then complete it:
``success`` when done, ``fail`` for a bad signature or unknown order, and HTTP 500 ``fail`` when
``completedOrder`` throws (amount mismatch, already completed), because the yipay handler lets that escape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from monitor.protocols.epay import (
    CODE_OK,
    SIGN_TYPE_MD5,
    coerce_int,
    format_money,
    parse_epay_time,
    sign_md5,
    verify_md5,
)
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder, bc_amount

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["NOTIFY_PATH", "RETURN_PATH", "EpayShop"]

NOTIFY_PATH = "/pay/yipay/notify_url"
RETURN_PATH = "/pay/yipay/return_url"


class EpayShop:
    """epay V1 for the simulated shop. Channel credentials: ``pid``, ``key``."""

    kind = "epay"
    notify_path = NOTIFY_PATH
    notify_methods = ("GET",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        params: dict[str, str] = {
            "pid": channel.credentials["pid"],
            "type": order.method,
            "out_trade_no": order.order_id,
            "notify_url": self.shop.notify_url_for(self.kind),
            "return_url": f"{self.shop.base_url}{RETURN_PATH}?order_id={order.order_id}",
            "name": order.order_id,
            "money": format_money(order.amount),
            "clientip": "127.0.0.1",
            "device": "pc",
        }
        params["sign"] = sign_md5(params, channel.credentials["key"])
        params["sign_type"] = SIGN_TYPE_MD5
        reply = await self.shop.client.post(channel.endpoint + "mapi.php", data=params)
        if reply.status_code != 200:
            raise OpenFailed(f"http_error: {reply.status_code}")
        try:
            body = reply.json()
        except ValueError:
            raise OpenFailed("bad_response: not JSON") from None
        if not isinstance(body, dict) or coerce_int(body.get("code")) != CODE_OK or not body.get("trade_no"):
            raise OpenFailed(f"business_error: {body!r}")
        order.payurl = str(body.get("payurl") or "") or None
        return str(body["trade_no"])

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        channel = gateway.channel(channel_id)
        return {"pid": str(channel.pid), "key": channel.key}

    async def notify(self, request: Request) -> Response:
        params = dict(request.query_params)
        order = self.shop.order(params.get("out_trade_no", ""))
        channel = self.shop.channels.get(order.channel) if order is not None else None
        if order is None or channel is None or channel.kind != self.kind:
            return PlainTextResponse("fail")
        trade_no = params.get("trade_no", "")
        verified = bool(trade_no) and verify_md5(params, channel.credentials["key"])
        result = self.shop.callback(order, verified=verified, trade_no=trade_no or None,
                                    amount=bc_amount(params.get("money", "")), paid_at=_paid_at(params.get("endtime")))
        if result == "completed":
            return PlainTextResponse("success")
        if result == "bad_signature":
            return PlainTextResponse("fail")
        return PlainTextResponse("fail", status_code=500)  # completedOrder() threw


def _paid_at(endtime: str | None) -> str | None:
    """The gateway's pay time as ISO 8601 with +08:00, when the notify carries one (V1 notifies do not)."""
    if not endtime:
        return None
    try:
        return parse_epay_time(endtime).isoformat()
    except ValueError:
        return None
