"""A simulated epay V2 gateway (EP-new's RSA API, channels.yaml kind ``epay_v2``), several channels in one app.

Each channel is one EP-new site + merchant under its own path prefix, serving the V2 API the way
``lib\\ApiHelper`` and ``lib\\api\\{Pay,Merchant}`` answer it:

- ``POST /{channel}/api/pay/create``, ``/api/pay/query``, ``/api/merchant/info``, ``/api/merchant/orders``
  (form-encoded); any other ``/api/...`` path is code -5;
- requests carry ``pid``, ``timestamp`` (rejected beyond ±300 s of the gateway clock) and a signature: RSA
  (SHA256withRSA, checked with the merchant's public key), or MD5 with the V1 rule when the merchant's
  ``keytype`` allows it (``allow_md5``);
- success is code 0 with ``timestamp``, ``sign_type`` RSA and ``sign`` by the platform private key over every
  top-level scalar field; errors (-1, -3 sign/auth, -4 no params, -5 unknown method) are unsigned;
- a paid order's notify is a GET RSA-signed by the platform key, acknowledged when the body contains
  ``success``, retried on the cron schedule like V1 (the shared machinery is :class:`~monitor.sim.epay_site.EpaySite`).

Fault knobs behave as on V1 (``merchant_banned``: ``api/merchant/info`` says ``status`` 0, creates are refused,
queries answer normally); a bad-signature fault corrupts the ``sign`` of successful replies and notifies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols import epay as v1
from monitor.protocols import epay_v2 as v2
from monitor.sim import php
from monitor.sim.core import HANG_SECONDS, Handler
from monitor.sim.epay_site import EpayMerchant, EpayOrder, EpaySite, corrupt_sign
from monitor.sim.faults import Faults
from monitor.sim.php import JSON, php_json, text

__all__ = ["EpayV2Channel", "EpayV2Gateway"]

MAINTENANCE_MSG = "系统维护中"
_METHOD = re.compile(r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")  # ApiHelper::load_api's class/func


@dataclass(slots=True, kw_only=True)
class EpayV2Channel(EpayMerchant):
    """A V2 merchant: the public key its requests are verified with, the platform key that signs replies and
    notifies, and whether MD5 requests are accepted (``keytype`` 0) with which key."""

    merchant_public_key: str
    platform_private_key: str
    allow_md5: bool = False
    key: str | None = None


_Method = Callable[[EpayV2Channel, dict[str, str]], dict[str, object]]


class _Rejected(Exception):
    """A request epay answers with an unsigned error (``echojsonmsg``)."""

    def __init__(self, msg: str, code: int = v1.CODE_ERROR) -> None:
        super().__init__(msg)
        self.msg, self.code = msg, code


class EpayV2Gateway(EpaySite[EpayV2Channel]):
    """The simulated epay V2 gateway. Build it, add channels, serve :attr:`app` (``SimServer.add_gateway``).

    Options as :class:`~monitor.sim.epay.EpayGateway`. Channels without their own platform key share one
    2048-bit key generated once per gateway; :meth:`platform_public_key_pem` gives the key clients verify with.
    """

    kind = "epay_v2"

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None,
                 hang_s: float = HANG_SECONDS, notify_retry_delays: Sequence[float] | None = None,
                 cron_notify: bool = True) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s, notify_retry_delays=notify_retry_delays,
                         cron_notify=cron_notify)
        self._platform_key: str | None = None
        methods = ["GET", "POST"]  # api.php takes any method; without a POSTed pid the answer is -4
        self.app = Starlette(routes=[
            Route("/{channel}/api/pay/create", self.guarded(self._create), methods=methods),
            Route("/{channel}/api/pay/query", self.guarded(self._signed(self._query)), methods=methods),
            Route("/{channel}/api/merchant/info", self.guarded(self._signed(self._info)), methods=methods),
            Route("/{channel}/api/merchant/orders", self.guarded(self._signed(self._orders)), methods=methods),
            Route("/{channel}/api/{rest:path}", self.guarded(self._unknown), methods=methods),
            Route("/{channel}/pay/submit/{trade_no}/", self.guarded(self._pay_page), methods=methods),
        ])

    def add_channel(self, channel_id: str, *, pid: int | str, merchant_public_key: str,
                    platform_private_key: str | None = None, allow_md5: bool = False, key: str | None = None,
                    faults: Faults | None = None) -> EpayV2Channel:
        """Add a merchant under ``/{channel_id}/``. Keys are PEM or epay's bare base64. Raises ``ValueError`` for
        a bad or duplicate id, a key that is not RSA, or ``allow_md5`` without an MD5 ``key``."""
        v2.load_public_key(merchant_public_key)
        if platform_private_key is None:
            platform_private_key = self._shared_platform_key()
        v2.load_private_key(platform_private_key)
        if allow_md5 and not key:
            raise ValueError("allow_md5 needs the merchant's MD5 key")
        return self._register(EpayV2Channel(
            id=channel_id, pid=int(pid), merchant_public_key=merchant_public_key,
            platform_private_key=platform_private_key, allow_md5=allow_md5, key=key,
            faults=faults if faults is not None else Faults(),
        ))

    def platform_public_key_pem(self, channel_id: str) -> str:
        """The platform public key (PEM) that verifies this channel's replies and notifies."""
        return v2.public_key_pem(v2.load_private_key(self.channel(channel_id).platform_private_key))

    def _shared_platform_key(self) -> str:
        if self._platform_key is None:
            self._platform_key = v2.private_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return self._platform_key

    def maintenance_reply(self, request: Request, channel: EpayV2Channel) -> Response:
        """``{"code":-1,"msg":"系统维护中"}``: unsigned, as every V2 error is."""
        return _error(MAINTENANCE_MSG)

    # ---- requests ----------------------------------------------------------------------------------

    async def _verify(self, request: Request, channel: EpayV2Channel) -> dict[str, str]:
        """``ApiHelper::verify`` + ``api_verify``: the POSTed parameters of an authenticated request."""
        params = await php.post_params(request)
        if "pid" not in params:
            raise _Rejected("未传入任何参数", v1.CODE_MISSING)
        pid = php.intval(params["pid"])
        if pid == 0:
            raise _Rejected("商户ID不能为空")
        if pid != channel.pid:
            raise _Rejected("商户不存在！")
        sign_type = params.get("sign_type", "")
        if not channel.allow_md5 and sign_type != v2.SIGN_TYPE_RSA:
            raise _Rejected("该商户只能使用RSA签名类型", v1.CODE_AUTH_ERROR)
        timestamp = params.get("timestamp")
        if php.php_empty(timestamp):
            raise _Rejected("时间戳(timestamp)字段不能为空", v1.CODE_AUTH_ERROR)
        if not v2.timestamp_within(timestamp or "", self._clock.now().timestamp()):
            raise _Rejected("时间戳字段不正确，请检查服务器时间", v1.CODE_AUTH_ERROR)
        if "sign" not in params:
            raise _Rejected("缺少签名参数", v1.CODE_AUTH_ERROR)
        if sign_type == v2.SIGN_TYPE_RSA:
            valid = v2.verify_rsa(params, params["sign"], channel.merchant_public_key)
        else:  # keytype 0: any other sign_type takes the MD5 path
            valid = v1.verify_md5(params, channel.key or "")
        if not valid:
            raise _Rejected(f"{sign_type or 'MD5'}签名校验失败", v1.CODE_AUTH_ERROR)
        return params

    def _sign(self, channel: EpayV2Channel, body: dict[str, object]) -> dict[str, object]:
        reply = v2.signed_reply(body, channel.platform_private_key, int(self._clock.now().timestamp()))
        if channel.faults.bad_signature(self._rng):
            reply["sign"] = corrupt_sign(str(reply["sign"]))
        return reply

    def _signed(self, method: _Method) -> Handler:
        """A verified, RSA-signed ``api/<class>/<func>`` answered by ``echojson`` (application/json)."""

        async def endpoint(request: Request, channel: EpayV2Channel) -> Response:
            try:
                body = method(channel, await self._verify(request, channel))
            except _Rejected as exc:
                return _error(exc.msg, exc.code)
            return text(php_json(self._sign(channel, body), unescaped_unicode=True), JSON)

        return endpoint

    async def _create(self, request: Request, channel: EpayV2Channel) -> Response:
        """``api/pay/create`` (``Pay::create`` under ``API_INIT``): the order and where to send the buyer."""
        try:
            params = await self._verify(request, channel)
        except _Rejected as exc:
            return _error(exc.msg, exc.code)
        order = self._create_order(request, channel, params)
        if isinstance(order, str):
            return _error(order)
        body: dict[str, object] = {"code": v2.CODE_OK, "trade_no": order.trade_no, "pay_type": "jump",
                                   "pay_info": order.payurl}
        # Payment::echoJson: json_encode defaults and no Content-Type header.
        return text(php_json(self._sign(channel, body)))

    def _query(self, channel: EpayV2Channel, params: dict[str, str]) -> dict[str, object]:
        """``api/pay/query``: one order; empty fields are dropped."""
        if not php.php_empty(params.get("trade_no")):
            order = self._find(channel, params["trade_no"], None)
        elif not php.php_empty(params.get("out_trade_no")):
            order = self._find(channel, None, params["out_trade_no"])
        else:
            raise _Rejected("订单号不能为空")
        if order is None:
            raise _Rejected("订单号不存在")
        full = {"code": v2.CODE_OK, **_v2_row(channel, order), "bill_trade_no": None}
        return {k: v for k, v in full.items() if not _is_empty(v)}

    def _info(self, channel: EpayV2Channel, params: dict[str, str]) -> dict[str, object]:
        """``api/merchant/info``, without the settle_* fields real servers never fill in."""
        today, lastday = self._paid_on(channel, 0), self._paid_on(channel, 1)
        return {
            "code": v2.CODE_OK, "pid": channel.pid, "status": 0 if channel.faults.merchant_banned else 1,
            "pay_status": 1, "settle_status": 1,
            "money": f"{self._accrue(channel):.2f}", "order_num": len(channel.orders),
            "order_num_today": len(today), "order_num_lastday": len(lastday),
            "order_money_today": v1.format_money(sum(o.money for o in today)),  # strval(round(sum, 2))
            "order_money_lastday": v1.format_money(sum(o.money for o in lastday)),
        }

    def _orders(self, channel: EpayV2Channel, params: dict[str, str]) -> dict[str, object]:
        """``api/merchant/orders``: newest first, ``limit`` ≤ 50. Any posted ``status`` filters on 0, because
        the server reads ``$_GET['status']``. Only ``code`` and ``timestamp`` end up signed."""
        limit = max(min(php.intval(params["limit"]) if "limit" in params else 10, 50), 0)
        offset = max(php.intval(params.get("offset", "0")), 0)
        orders = sorted(channel.orders.values(), key=lambda o: o.trade_no, reverse=True)
        if "status" in params:
            orders = [o for o in orders if o.status == v1.STATUS_UNPAID]
        return {"code": v2.CODE_OK, "data": [_v2_row(channel, o) for o in orders[offset : offset + limit]]}

    async def _unknown(self, request: Request, channel: EpayV2Channel) -> Response:
        msg = "接口方法不存在" if _METHOD.match(request.path_params["rest"]) else "URL Error!"
        return _error(msg, v1.CODE_NO_ACT)

    def _notify_query(self, channel: EpayV2Channel, order: EpayOrder) -> dict[str, str]:
        return v2.notify_params(
            pid=channel.pid, trade_no=order.trade_no, out_trade_no=order.out_trade_no, type=order.type,
            name=order.name, money=order.money, timestamp=int(self._clock.now().timestamp()),
            private_key=channel.platform_private_key, buyer=order.buyer, param=order.param,
        )


def _v2_row(channel: EpayV2Channel, order: EpayOrder) -> dict[str, object]:
    """An order as ``api/merchant/orders`` lists it (V1's row plus the upstream id, client IP and refunds)."""
    row = order.row(channel.pid)
    return {"trade_no": row.pop("trade_no"), "out_trade_no": row.pop("out_trade_no"), "api_trade_no": None,
            **row, "clientip": order.clientip, "refundmoney": None}


def _is_empty(value: object) -> bool:
    """epay's ``isEmpty``: null or a whitespace-only string."""
    return value is None or (isinstance(value, str) and value.strip() == "")


def _error(msg: str, code: int = v1.CODE_ERROR) -> Response:
    """``echojsonmsg``: unsigned, JSON_UNESCAPED_UNICODE, application/json."""
    return text(php_json({"code": code, "msg": msg}, unescaped_unicode=True), JSON)
