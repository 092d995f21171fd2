"""A simulated epay V1 gateway ("彩虹易支付"): several channels in one starlette app, in either server flavour.

Each channel is one epay site + merchant (pid, MD5 key) under its own path prefix, serving ``/{channel}/submit.php``
(the browser flow), ``/{channel}/mapi.php``, ``/{channel}/api.php`` (``act=order|orders|query|settle``) and the pay
page ``/{channel}/pay/submit/{trade_no}/``,
byte for byte like the real servers where it matters to a client:
``json_encode`` escaping, ``text/html`` content types, money as strings, HTTP 500 for an empty list, the key echoed.
A channel runs on either server flavour: ``new`` (EP-new, the default) or ``old`` (EP-old: other codes and
messages, ``act=settle`` rows doubled by PDO ``FETCH_BOTH``, money sums in ``act=query``, ``text/html``).

:class:`~monitor.sim.epay_site.EpaySite` holds what V1 and V2 (``epay_v2.py``) share: simulated buyers, notify
retries on epay's ``cron.php`` schedule, balance growth and settlement stalls, and the ground truth.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols import epay as v1
from monitor.sim import php
from monitor.sim.core import HANG_SECONDS, NotifyAttempt, OrderTruth
from monitor.sim.epay_site import (
    _SYSMSG,
    MAINTENANCE_MSG,
    EpayChannel,
    EpayMerchant,
    EpayOrder,
    EpaySite,
    Flavour,
    corrupt_sign,
)
from monitor.sim.faults import Faults
from monitor.sim.php import HTML, JSON, php_json, text

__all__ = ["EpayChannel", "EpayGateway", "EpayMerchant", "EpayOrder", "EpaySite", "Flavour",
           "NotifyAttempt", "OrderTruth", "corrupt_sign", "php_json"]


class EpayGateway(EpaySite[EpayChannel]):
    """The simulated epay V1 gateway. Build it, add channels, serve :attr:`app` (see ``monitor.sim.server``).

    ``rng`` drives every random choice (faults, trade numbers, buyers) and ``clock`` every timestamp, so a
    seeded run is reproducible. Call :meth:`aclose` when done: it releases hung requests and cancels pending
    notifies.
    """

    kind = "epay"

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None,
                 hang_s: float = HANG_SECONDS, notify_retry_delays: Sequence[float] | None = None,
                 cron_notify: bool = True) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s, notify_retry_delays=notify_retry_delays,
                         cron_notify=cron_notify)
        self.app = Starlette(routes=[
            Route("/{channel}/submit.php", self.guarded(self._submit), methods=["GET", "POST"]),
            Route("/{channel}/mapi.php", self.guarded(self._mapi), methods=["GET", "POST"]),
            Route("/{channel}/api.php", self.guarded(self._api), methods=["GET", "POST"]),
            Route("/{channel}/pay/submit/{trade_no}/", self.guarded(self._pay_page), methods=["GET", "POST"]),
        ])

    def add_channel(self, channel_id: str, pid: int | str, key: str, faults: Faults | None = None, *,
                    flavour: Flavour = "new") -> EpayChannel:
        """Add a merchant served under ``/{channel_id}/`` on an EP-``flavour`` server. Raises ``ValueError``
        for a bad or duplicate id, an empty key or an unknown flavour."""
        if not key:
            raise ValueError("the merchant key must not be empty")
        if flavour not in ("old", "new"):
            raise ValueError(f"flavour must be 'old' or 'new', got {flavour!r}")
        return self._register(EpayChannel(id=channel_id, pid=int(pid), key=key, flavour=flavour,
                                          faults=faults if faults is not None else Faults()))

    def maintenance_reply(self, request: Request, channel: EpayChannel) -> Response:
        """A well-formed epay error (code -1 系统维护中) in the endpoint's own format and content type."""
        body = {"code": v1.CODE_ERROR, "msg": MAINTENANCE_MSG}
        if request.url.path.endswith("/mapi.php"):
            return text(php_json(body, unescaped_unicode=True), JSON)
        if request.url.path.endswith("/api.php"):
            return text(php_json(body), HTML if channel.flavour == "old" else JSON)
        return text(_SYSMSG.format(msg=MAINTENANCE_MSG))

    # ---- HTTP --------------------------------------------------------------------------------------

    async def _submit(self, request: Request, channel: EpayChannel) -> Response:
        """``submit.php``, the browser page flow: parameters from the query string when it
        has ``pid``, else from the form; every error is an HTTP 200 站点提示信息 page, success a page that sends
        the browser on to the pay page. EP-old's ``txprotect`` filter answers 404 with an empty body to
        script-like clients."""
        old = channel.flavour == "old"
        if old and _txprotect_blocks(request):
            return Response(status_code=404)
        params = dict(request.query_params) if "pid" in request.query_params else await php.post_params(request)
        pid = php.intval(params.get("pid", ""))
        if pid == 0 or pid != channel.pid:
            return text(_SYSMSG.format(msg="商户不存在！"))
        if not v1.verify_md5(params, channel.key):
            return text(_SYSMSG.format(msg="签名校验失败，请返回重试！" if old else "MD5签名校验失败"))
        params.setdefault("clientip", request.client.host if request.client else "127.0.0.1")
        order = self._create_order(request, channel, params)
        if isinstance(order, str):
            return text(_SYSMSG.format(msg=order))
        return text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>正在为您跳转到支付页面，请稍候...</title>'
                    f'<meta http-equiv="refresh" content="0;url={order.payurl}"></head>'
                    f'<body><script>window.location.replace("{order.payurl}");</script></body></html>')

    async def _mapi(self, request: Request, channel: EpayChannel) -> Response:
        """``mapi.php``. EP-new: POST only, bad sign -3 ``MD5签名校验失败``, success as
        text/html. EP-old: GET or POST, bad sign -1 ``签名校验失败，请返回重试！``, success as JSON."""
        old = channel.flavour == "old"
        form = await php.post_params(request)
        if old:
            params = dict(request.query_params) if "pid" in request.query_params else form
            if "pid" not in params:
                return text('{"code":-4}')
        elif "pid" not in form:
            return text('{"code":-4, "msg":"未传入任何参数"}', JSON)
        else:
            params = form
        pid = php.intval(params["pid"])
        if pid == 0:
            return _mapi_error("PID不存在" if old else "商户ID不能为空")
        if pid != channel.pid:
            return _mapi_error("商户不存在！")
        if old:
            if not v1.verify_md5(params, channel.key):
                return _mapi_error("签名校验失败，请返回重试！")
        elif "sign" not in params:
            return _mapi_error("缺少签名参数", v1.CODE_AUTH_ERROR)
        elif params.get("sign_type") == "RSA":  # a V1 merchant has no public key on file
            return _mapi_error("签名校验失败，商户公钥错误", v1.CODE_AUTH_ERROR)
        elif not v1.verify_md5(params, channel.key):
            return _mapi_error(f"{params.get('sign_type') or 'MD5'}签名校验失败", v1.CODE_AUTH_ERROR)
        order = self._create_order(request, channel, params)
        if isinstance(order, str):
            return _mapi_error(order)
        body = php_json({"code": v1.CODE_OK, "trade_no": order.trade_no, "payurl": order.payurl})
        return text(body, JSON if old else HTML)  # EP-new's success sets no header

    async def _api(self, request: Request, channel: EpayChannel) -> Response:
        """``api.php`` (GET, key in the query): EP-new answers application/json, EP-old text/html."""
        old = channel.flavour == "old"
        q = request.query_params
        act = q.get("act")
        if act not in ("query", "settle", "order", "orders"):
            return _reply({"code": v1.CODE_NO_ACT, "msg": "No Act!"}, old)
        pid = php.intval(q.get("pid", ""))
        if pid == 0 or pid != channel.pid:
            return _reply({"code": v1.CODE_AUTH_ERROR, "msg": "PID不存在" if old else "商户ID不存在"}, old)
        if not hmac.compare_digest(q.get("key", "").encode("utf-8"), channel.key.encode("utf-8")):
            if old:
                return _reply({"code": v1.CODE_KEY_ERROR, "msg": "KEY校验失败"}, old)
            return _reply({"code": v1.CODE_AUTH_ERROR, "msg": "商户密钥错误"}, old)
        if act == "order":
            return self._act_order(channel, q, old)
        # EP-old: ``$_GET['limit'] ? intval : 10``; EP-new: ``isset ? intval : 10``; both cap at 50.
        limit_text = q.get("limit")
        limit = 10 if (php.php_empty(limit_text) if old else limit_text is None) else php.intval(limit_text or "")
        limit = max(min(limit, 50), 0)
        offset = 0 if old else max(php.intval(q.get("offset", "0")), 0)
        if act == "orders":
            orders = sorted(channel.orders.values(), key=lambda o: o.trade_no, reverse=True)
            if "status" in q and not old:
                orders = [o for o in orders if o.status == php.intval(q["status"])]
            rows = [o.row(channel.pid) for o in orders[offset : offset + limit]]
            if not rows:
                # PHP 8: count() of an undefined $data is a TypeError -> 500 with an empty body.
                return Response(status_code=500)
            return _reply({"code": v1.CODE_OK, "msg": "查询订单记录成功！", "count": len(rows), "data": rows}, old)
        if act == "settle":
            settles = list(reversed(channel.settlements))[offset : offset + limit]
            if old:  # PDO FETCH_BOTH, and the echoed pid, key and an always-null type
                data = [php.fetch_both(s) for s in settles] or None
                return _reply({"code": v1.CODE_OK, "msg": "查询结算记录成功！", "pid": pid, "key": channel.key,
                               "type": None, "data": data}, old)
            return _reply({"code": v1.CODE_OK, "msg": "查询结算记录成功！", "data": settles or None}, old)
        return self._act_query(channel, old)

    def _act_order(self, channel: EpayChannel, q: QueryParams, old: bool) -> Response:
        if old:  # isset(): an empty trade_no still wins
            trade_no, out_trade_no = q.get("trade_no"), q.get("out_trade_no")
        else:  # !empty()
            trade_no = None if php.php_empty(q.get("trade_no")) else q["trade_no"]
            out_trade_no = None if php.php_empty(q.get("out_trade_no")) else q["out_trade_no"]
        if trade_no is None and out_trade_no is None:
            if old:
                return text('{"code":-4,"msg":"参数不完整"}')
            return _reply({"code": v1.CODE_MISSING, "msg": "订单号不能为空"}, old)
        order = self._find(channel, trade_no, out_trade_no)
        if order is None:
            return _reply({"code": v1.CODE_ERROR, "msg": "订单号不存在"}, old)
        row = order.row(channel.pid)
        head = {"code": v1.CODE_OK, "msg": "查询订单号成功！" if old else "succ",
                "trade_no": row.pop("trade_no"), "out_trade_no": row.pop("out_trade_no")}
        if old:
            return _reply({**head, **row}, old)
        return _reply({**head, "api_trade_no": None, "bill_trade_no": None, **row, "payurl": order.payurl}, old)

    def _act_query(self, channel: EpayChannel, old: bool) -> Response:
        info: dict[str, object] = {
            "code": v1.CODE_OK, "pid": channel.pid, "key": channel.key,  # real servers echo the key
            "active": 0 if channel.faults.merchant_banned else 1,  # merchant_banned: 封禁, act=order still answers
            "money": f"{self._accrue(channel):.2f}", "type": 1, "account": "sim@example.com",
            "username": "模拟商户", "orders": len(channel.orders),
        }
        today, lastday = self._paid_on(channel, 0), self._paid_on(channel, 1)
        if old:  # SUM(money) by endtime: a decimal string, null when there is none
            info["order_today"] = f"{sum(o.money for o in today):.2f}" if today else None
            info["order_lastday"] = f"{sum(o.money for o in lastday):.2f}" if lastday else None
        else:
            info["orders_today"] = len(today)
            info["orders_lastday"] = len(lastday)
        return _reply(info, old)

    def _notify_query(self, channel: EpayChannel, order: EpayOrder) -> dict[str, str]:
        return v1.notify_params(pid=channel.pid, trade_no=order.trade_no, out_trade_no=order.out_trade_no,
                                type=order.type, name=order.name, money=order.money, key=channel.key,
                                param=order.param)


#: EP-old ``includes/txprotect.php``: User-Agent fragments it turns away ("python" is matched lowercase).
_BLOCKED_AGENTS = ("python", "libcurl/", "Go-http-client", "HeadlessChrome", "wechatdevtools/", "Baiduspider")


def _txprotect_blocks(request: Request) -> bool:
    agent = request.headers.get("user-agent", "")
    accept = request.headers.get("accept")
    if not agent or accept is None or any(a in agent for a in _BLOCKED_AGENTS):
        return True
    return accept == "*/*" and ("Windows NT 6.1" in agent or "Windows NT 5.1" in agent)


def _reply(body: dict[str, object], old: bool) -> Response:
    """An ``api.php`` answer: ``json_encode`` defaults; EP-old text/html, EP-new application/json."""
    return text(php_json(body), HTML if old else JSON)


def _mapi_error(msg: str, code: int = v1.CODE_ERROR) -> Response:
    """``echojsonmsg``: JSON_UNESCAPED_UNICODE, application/json."""
    return text(php_json({"code": code, "msg": msg}, unescaped_unicode=True), JSON)
