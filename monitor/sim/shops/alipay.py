"""The shop side of Alipay 当面付 (``alipay_f2f``), as dujiaoka's ``AlipayController`` does it through yansongda/pay v2.

Opening an order: ``alipay.trade.precreate`` POSTed form-encoded to the channel's ``gateway.do?charset=utf-8``,
signed RSA2 with the app private key; the reply's ``code`` must be ``10000`` (checked first, as yansongda does) and
its signature over the raw ``alipay_trade_precreate_response`` text must verify with the Alipay public key. The
buyer then scans ``qr_code``. Notify: ``POST /pay/alipay/notify_url``, the order looked up by ``out_trade_no``
(unknown: ``error``), the RSA2 signature checked with ``sign`` and ``sign_type`` removed; ``TRADE_SUCCESS`` and
``TRADE_FINISHED`` complete the order with ``total_amount`` and ``trade_no``. Any verified notify is answered
``success``, even one of another status; a bad signature, or ``completedOrder`` throwing (amount mismatch, already
completed), is answered ``fail``, so Alipay retries.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from monitor.protocols.alipay import (
    CODE_OK,
    CODE_UNAVAILABLE,
    NOTIFY_ACK,
    PAID_STATUSES,
    SIGN_TYPE_RSA2,
    format_alipay_time,
    parse_alipay_time,
    response_node_name,
    sign_rsa2,
    verify_response,
    verify_rsa2,
)
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder, bc_amount

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["NOTIFY_PATH", "AlipayShop"]

NOTIFY_PATH = "/pay/alipay/notify_url"
PRECREATE = "alipay.trade.precreate"


class AlipayShop:
    """Alipay 当面付 for the simulated shop. Channel credentials: ``app_id``, ``app_private_key`` (dujiaoka's
    ``merchant_pem``) and ``alipay_public_key`` (the 支付宝公钥, dujiaoka's ``merchant_key``)."""

    kind = "alipay_f2f"
    notify_path = NOTIFY_PATH
    notify_methods = ("POST",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Precreate the trade; return its ``out_trade_no`` (what the simulated buyer scans)."""
        creds = channel.credentials
        biz = {"out_trade_no": order.order_id, "total_amount": float(order.amount), "subject": order.order_id,
               "product_code": ""}
        params: dict[str, str] = {
            "app_id": creds["app_id"],
            "method": PRECREATE,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": SIGN_TYPE_RSA2,
            "version": "1.0",
            # The shop opens an order as it creates it, so its creation time is the request's time.
            "timestamp": format_alipay_time(order.created_at),
            "notify_url": self.shop.notify_url_for(self.kind),
            "return_url": f"{self.shop.base_url}/detail-order-sn/{order.order_id}",
            "biz_content": json.dumps(biz, separators=(",", ":")),
        }
        params["sign"] = sign_rsa2(params, creds["app_private_key"])
        reply = await self.shop.client.post(channel.endpoint + "gateway.do", params={"charset": "utf-8"},
                                            data=params)
        if reply.status_code != 200:
            raise OpenFailed(f"http_error: {reply.status_code}")
        try:
            body = reply.json()
        except ValueError:
            raise OpenFailed("bad_response: not JSON") from None
        if not isinstance(body, dict):
            raise OpenFailed("bad_response: not a JSON object")
        node = body.get(response_node_name(PRECREATE)) or body.get("error_response")
        if not isinstance(node, dict):
            raise OpenFailed("bad_response: no response node")
        code = str(node.get("code", ""))
        if code != CODE_OK:
            outcome = "maintenance" if code == CODE_UNAVAILABLE else "business_error"
            raise OpenFailed(f"{outcome}: {code} {node.get('sub_code', '')} {node.get('sub_msg', '')}".rstrip())
        if not verify_response(reply.text, PRECREATE, creds["alipay_public_key"]):
            raise OpenFailed("bad_signature: precreate reply")
        qr_code = node.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise OpenFailed("bad_response: no qr_code")
        order.payurl = qr_code
        return str(node.get("out_trade_no") or order.order_id)

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        """The app's id and private key and the platform public key; ``ValueError`` if the simulated channel was
        added without ``app_private_key`` (the shop could not sign)."""
        channel = gateway.channel(channel_id)
        if not channel.app_private_key:
            raise ValueError(f"alipay channel {channel_id!r} has no app_private_key for the shop to sign with")
        return {
            "app_id": channel.app_id,
            "app_private_key": channel.app_private_key,
            "alipay_public_key": gateway.platform_public_key_pem(channel_id),
        }

    async def notify(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        params = dict(parse_qsl(body, keep_blank_values=True))
        order = self.shop.order(params.get("out_trade_no", ""))
        if order is None:
            return PlainTextResponse("error")
        channel = self.shop.channels.get(order.channel)
        if channel is None or channel.kind != self.kind:
            return PlainTextResponse("fail")  # dujiaoka would verify with another gateway's keys and fail
        verified = verify_rsa2(params, params.get("sign", ""), channel.credentials["alipay_public_key"], notify=True)
        trade_no = params.get("trade_no") or None
        status = params.get("trade_status", "")
        if verified and status not in PAID_STATUSES:
            # Acknowledged without completing the order: the notify arrived, it just says "not paid".
            self.shop.log.write("callback_received", order, trade_no=trade_no, verified=True,
                                detail=f"trade_status {status or '(none)'}")
            return PlainTextResponse(NOTIFY_ACK)
        result = self.shop.callback(order, verified=verified, trade_no=trade_no,
                                    amount=bc_amount(params.get("total_amount", "")),
                                    paid_at=_paid_at(params.get("gmt_payment")))
        return PlainTextResponse(NOTIFY_ACK if result == "completed" else "fail")


def _paid_at(gmt_payment: str | None) -> str | None:
    """``gmt_payment`` (Beijing ``Y-m-d H:i:s``) as ISO 8601 with +08:00, when present and well-formed."""
    if not gmt_payment:
        return None
    try:
        return parse_alipay_time(gmt_payment).isoformat()
    except ValueError:
        return None
