"""The shop side of WeChat Pay API v2 (``wxpay_v2``), as dujiaoka's ``WepayController`` does it through
yansongda/pay v2.

Opening an order: ``pay/unifiedorder`` with ``trade_type=NATIVE``, ``total_fee`` in fen (``bcmul(price, 100, 0)``),
``body`` the order id, the merchant's ``spbill_create_ip`` and a random ``nonce_str``, signed MD5 (upper case,
``&key=``). The reply must say ``return_code`` and ``result_code`` SUCCESS and carry a valid signature, checked in
that order as yansongda does; the buyer then scans ``code_url``. Notify: ``POST /pay/wepay/notify_url`` with XML,
the order looked up by ``out_trade_no`` (unknown: ``error``), the MD5 signature checked over every field, then the
order completed with ``total_fee/100`` and ``transaction_id``; dujiaoka does not look at ``result_code``. The answer
is a plain ``success`` (not WeChat's XML ack), or ``fail`` for a bad signature or when completing throws
(amount mismatch, already completed).
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from monitor.protocols.wxpay import (
    SUCCESS,
    WXPAY_TZ,
    WxpayXmlError,
    from_fen,
    parse_time_end,
    parse_xml,
    sign_md5,
    to_fen,
    to_xml,
    verify,
)
from monitor.sim.shop import OpenFailed, ShopChannel, ShopOrder

if TYPE_CHECKING:
    from monitor.sim.shop import Shop

__all__ = ["NOTIFY_PATH", "WxpayShop"]

NOTIFY_PATH = "/pay/wepay/notify_url"
#: The ``err_code`` WeChat answers while it is busy (its maintenance reply).
_BUSY = "SYSTEMERROR"


class WxpayShop:
    """WeChat Pay v2 Native for the simulated shop. Channel credentials: ``appid``, ``mch_id``, ``key`` (dujiaoka's
    ``merchant_id``, ``merchant_key``, ``merchant_pem``)."""

    kind = "wxpay_v2"
    notify_path = NOTIFY_PATH
    notify_methods = ("POST",)

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Create the Native order; return its ``prepay_id`` (the gateway's id of the unpaid order)."""
        creds = channel.credentials
        fields: dict[str, object] = {
            "appid": creds["appid"],
            "mch_id": creds["mch_id"],
            "nonce_str": secrets.token_hex(16),
            "body": order.order_id,
            "out_trade_no": order.order_id,
            "total_fee": to_fen(order.amount),
            "spbill_create_ip": "127.0.0.1",
            "notify_url": self.shop.notify_url_for(self.kind),
            "trade_type": "NATIVE",
        }
        fields["sign"] = sign_md5(fields, creds["key"])
        reply = await self.shop.client.post(channel.endpoint + "pay/unifiedorder", content=to_xml(fields).encode(),
                                            headers={"Content-Type": "text/xml; charset=utf-8"})
        if reply.status_code != 200:
            raise OpenFailed(f"http_error: {reply.status_code}")
        try:
            result = parse_xml(reply.content)
        except WxpayXmlError:
            raise OpenFailed("bad_response: not XML") from None
        if result.get("return_code") != SUCCESS:
            raise OpenFailed(f"business_error: return_code {result.get('return_code', '')} "
                             f"{result.get('return_msg', '')}".rstrip())
        if result.get("result_code") != SUCCESS:
            err_code = result.get("err_code", "")
            outcome = "maintenance" if err_code == _BUSY else "business_error"
            raise OpenFailed(f"{outcome}: {err_code} {result.get('err_code_des', '')}".rstrip())
        if not verify(result, creds["key"]):
            raise OpenFailed("bad_signature: unifiedorder reply")
        prepay_id = result.get("prepay_id", "")
        if not prepay_id:
            raise OpenFailed("bad_response: no prepay_id")
        order.payurl = result.get("code_url") or None
        return prepay_id

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        channel = gateway.channel(channel_id)
        return {"appid": channel.appid, "mch_id": channel.mch_id, "key": channel.key}

    async def notify(self, request: Request) -> Response:
        try:
            params = parse_xml(await request.body())
        except WxpayXmlError:
            return PlainTextResponse("fail")
        order = self.shop.order(params.get("out_trade_no", ""))
        if order is None:
            return PlainTextResponse("error")
        channel = self.shop.channels.get(order.channel)
        if channel is None or channel.kind != self.kind:
            return PlainTextResponse("fail")  # dujiaoka would verify with another gateway's key and fail
        result = self.shop.callback(order, verified=verify(params, channel.credentials["key"]),
                                    trade_no=params.get("transaction_id") or None,
                                    amount=_amount(params.get("total_fee", "")),
                                    paid_at=_paid_at(params.get("time_end")))
        return PlainTextResponse("success" if result == "completed" else "fail")


def _amount(total_fee: str) -> Decimal | None:
    """``bcdiv(total_fee, 100, 2)``: fen to CNY; None for a value that is not a whole number of fen."""
    try:
        return from_fen(total_fee.strip())
    except (InvalidOperation, ValueError):
        return None


def _paid_at(time_end: str | None) -> str | None:
    """``time_end`` (Beijing ``yyyyMMddHHmmss``) as ISO 8601 with +08:00, when present and well-formed."""
    if not time_end:
        return None
    try:
        return parse_time_end(time_end).astimezone(WXPAY_TZ).isoformat()
    except ValueError:
        return None
