"""A simulated epay V1 gateway ("彩虹易支付"), several channels in one starlette app.

Each channel is one epay site + merchant (pid, MD5 key) under its own path prefix, serving
``/{channel}/mapi.php`` (create an order), ``/{channel}/api.php`` (``act=order|orders|query|settle``) and the
pay page ``/{channel}/pay/submit/{trade_no}/``. Replies copy the real servers byte for byte where it matters
to a client (``reference/protocols.md`` §2.3, §2.5 and §9): PHP ``json_encode`` escaping, ``text/html``
content types, money as decimal strings, an empty list answered with HTTP 500 and no body, the merchant key
echoed by ``act=query``.

Per channel, :class:`~monitor.sim.faults.Faults` injects latency, HTTP 500s, hangs and HTML-instead-of-JSON
into every request, and shapes the simulated buyers: :meth:`EpayGateway.buyer_visits` pays an order with the
channel's pay probability and sends the signed async notify (§2.4) after the callback delay, unless the
callback is dropped. :meth:`EpayGateway.ground_truth` tells what really happened to every order, for checking
what paymon inferred.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols.epay import (
    CODE_AUTH_ERROR,
    CODE_ERROR,
    CODE_MISSING,
    CODE_NO_ACT,
    CODE_OK,
    EPAY_TZ,
    STATUS_PAID,
    STATUS_UNPAID,
    format_epay_time,
    is_notify_ack,
    notify_params,
    url_with_query,
    verify_md5,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["EpayChannel", "EpayGateway", "NotifyAttempt", "OrderTruth", "php_json"]

#: epay's curl settings for the merchant notify (§2.4).
NOTIFY_TIMEOUT_S = 5.0
NOTIFY_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/78.0.3904.108 Safari/537.36"
    ),
    "Accept": "*/*",
    "Accept-Language": "zh-CN,zh;q=0.8",
    "Connection": "close",
}
#: An unpaid order can be re-submitted with the same out_trade_no for 10 days (§2.2).
RESUBMIT_WINDOW = timedelta(seconds=864000)

_HTML = "text/html; charset=UTF-8"
_JSON = "application/json; charset=UTF-8"
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_OUT_TRADE_NO = re.compile(r"^[a-zA-Z0-9._\-|]+$")
_MONEY = re.compile(r"^[0-9.]+$")
_MAX_MONEY = Decimal("99999999.99")  # decimal(10,2)
_CENT = Decimal("0.01")
_SYSMSG = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>站点提示信息</title></head>'
    '<body id="error-page"><h3>站点提示信息</h3>{msg}</body></html>'
)


@dataclass(slots=True)
class _Order:
    """One ``pre_order`` row plus the simulator's bookkeeping."""

    trade_no: str
    out_trade_no: str
    type: str
    name: str
    money: Decimal
    notify_url: str
    return_url: str
    param: str | None
    clientip: str
    payurl: str
    created_at: datetime
    status: int = STATUS_UNPAID
    paid_at: datetime | None = None
    buyer: str | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)

    def row(self, pid: int) -> dict[str, object]:
        """The order as ``api.php`` lists it (EP-new field set; money a decimal string, status an int)."""
        return {
            "trade_no": self.trade_no,
            "out_trade_no": self.out_trade_no,
            "type": self.type,
            "pid": pid,
            "addtime": format_epay_time(self.created_at),
            "endtime": format_epay_time(self.paid_at) if self.paid_at else None,
            "name": self.name,
            "money": f"{self.money:.2f}",
            "param": self.param,
            "buyer": self.buyer,
            "status": self.status,
        }


@dataclass(slots=True)
class EpayChannel:
    """One simulated epay merchant: credentials, fault knobs, balance and orders (``trade_no`` → order)."""

    id: str
    pid: int
    key: str
    faults: Faults
    balance: Decimal = Decimal("0.00")
    orders: dict[str, _Order] = field(default_factory=dict)
    by_out_trade_no: dict[str, str] = field(default_factory=dict)
    settlements: list[dict[str, object]] = field(default_factory=list)


class EpayGateway(GatewayBase[EpayChannel]):
    """The simulated epay V1 gateway. Build it, add channels, serve :attr:`app` (see ``monitor.sim.server``).

    ``rng`` drives every random choice (faults, trade numbers, buyers) and ``clock`` every timestamp, so a
    seeded run is reproducible. Call :meth:`aclose` when done: it releases hung requests and cancels pending
    notifies.
    """

    kind = "epay"

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        hang_s: float = HANG_SECONDS,
    ) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        self.app = Starlette(
            routes=[
                Route("/{channel}/mapi.php", self.guarded(self._mapi), methods=["GET", "POST"]),
                Route("/{channel}/api.php", self.guarded(self._api), methods=["GET", "POST"]),
                Route(
                    "/{channel}/pay/submit/{trade_no}/", self.guarded(self._pay_page), methods=["GET", "POST"]
                ),
            ]
        )

    # ---- channels ----------------------------------------------------------------------------------

    def add_channel(
        self, channel_id: str, pid: int | str, key: str, faults: Faults | None = None
    ) -> EpayChannel:
        """Add a merchant served under ``/{channel_id}/``. Raises ``ValueError`` for a bad or duplicate id."""
        if not _CHANNEL_ID.match(channel_id):
            raise ValueError(f"channel id must match {_CHANNEL_ID.pattern}: {channel_id!r}")
        if channel_id in self._channels:
            raise ValueError(f"channel {channel_id!r} already exists")
        if not key:
            raise ValueError("the merchant key must not be empty")
        channel = EpayChannel(channel_id, int(pid), key, faults if faults is not None else Faults())
        self._channels[channel_id] = channel
        return channel

    # ---- buyers, settlement, ground truth ----------------------------------------------------------

    def buyer_visits(self, channel_id: str, trade_no: str) -> bool:
        """A buyer reaches the pay page of an order. Returns True if they paid.

        With the channel's ``pay_probability`` the order becomes paid (status 1, endtime now, balance
        credited) and, unless dropped with ``callback_drop_rate``, a notify is sent after
        ``callback_delay_s``. Already paid orders are left alone (False); an unknown order is a ``KeyError``.
        Must be called from the running event loop that serves the app.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(trade_no)
        if order is None:
            raise KeyError(f"no order {trade_no!r} on channel {channel_id!r}")
        faults = channel.faults
        if order.status != STATUS_UNPAID or not roll(faults.pay_probability, self._rng):
            return False
        order.status = STATUS_PAID
        order.paid_at = self._clock.now()
        order.buyer = f"20880{self._rng.randint(10**10, 10**11 - 1)}"
        channel.balance += order.money
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
        else:
            self.schedule(self._notify(channel, order, faults.callback_delay_s))
        return True

    def settle(self, channel_id: str) -> dict[str, object]:
        """Pay out the channel's balance as one completed settlement record (``act=settle`` lists it)."""
        channel = self.channel(channel_id)
        now = format_epay_time(self._clock.now())
        money = f"{channel.balance:.2f}"
        row: dict[str, object] = {
            "id": len(channel.settlements) + 1,
            "uid": channel.pid,
            "batch": now[:10].replace("-", ""),
            "auto": 1,
            "type": 1,
            "account": "sim@example.com",
            "username": "模拟商户",
            "money": money,
            "realmoney": money,
            "addtime": now,
            "endtime": now,
            "status": 1,
            "transfer_status": 0,
            "transfer_result": None,
            "transfer_date": None,
            "result": None,
        }
        channel.settlements.append(row)
        channel.balance = Decimal("0.00")
        return row

    def ground_truth(self) -> list[OrderTruth]:
        """Every order of every channel, in creation order per channel, as it really stands now."""
        return [
            truth_from_attempts(channel.id, o.trade_no, o.out_trade_no, o.money, o.created_at,
                                o.status != STATUS_UNPAID, o.paid_at, o.callback_dropped, o.attempts)
            for channel in self._channels.values()
            for o in channel.orders.values()
        ]

    # ---- HTTP --------------------------------------------------------------------------------------

    async def _mapi(self, request: Request, channel: EpayChannel) -> Response:
        """``mapi.php`` as EP-new: POST only, sign checked, order created or reused (§2.3)."""
        params = await _form(request) if request.method == "POST" else {}
        if "pid" not in params:
            return _text('{"code":-4, "msg":"未传入任何参数"}', _JSON)
        pid = _intval(params["pid"])
        if pid == 0:
            return _mapi_error("商户ID不能为空")
        if pid != channel.pid:
            return _mapi_error("商户不存在！")
        if not verify_md5(params, channel.key):
            return _mapi_error("签名校验失败，请返回重试！")
        out_trade_no = params.get("out_trade_no", "")
        notify_url = params.get("notify_url", "")
        return_url = params.get("return_url", "")
        money_text = params.get("money", "")
        type_ = params.get("type", "")
        clientip = params.get("clientip", "")
        name = _php_escape(params.get("name", ""))
        param = _php_escape(params["param"]) if "param" in params else None
        for value, label in (
            (out_trade_no, "订单号(out_trade_no)"),
            (notify_url, "通知地址(notify_url)"),
            (name, "商品名称(name)"),
            (money_text, "金额(money)"),
            (type_, "支付方式(type)"),
            (clientip, "用户IP地址(clientip)"),
        ):
            if _php_empty(value):
                return _mapi_error(f"{label}不能为空")
        money = _parse_money(money_text)
        if money is None:
            return _mapi_error("金额不合法")
        if not _OUT_TRADE_NO.match(out_trade_no):
            return _mapi_error("订单号(out_trade_no)格式不正确")
        name = _cut_bytes(name, 127)
        now = self._clock.now()

        old_no = channel.by_out_trade_no.get(out_trade_no)
        old = channel.orders.get(old_no) if old_no else None
        if old is not None and now - old.created_at < RESUBMIT_WINDOW:
            if old.status != STATUS_UNPAID:
                return _mapi_error(f"该订单({out_trade_no})已完成支付，请勿重复发起支付")
            if (old.money, old.name, old.notify_url, old.return_url, old.param) != (
                money,
                name,
                notify_url,
                return_url,
                param,
            ):
                return _mapi_error(f"该订单({out_trade_no})支付参数有变化，请更换订单号重新发起支付")
            old.type = type_
            order = old
        else:
            trade_no = self._new_trade_no(now)
            host = request.headers.get("host", "127.0.0.1")
            order = _Order(
                trade_no=trade_no,
                out_trade_no=out_trade_no,
                type=type_,
                name=name,
                money=money,
                notify_url=notify_url,
                return_url=return_url,
                param=param,
                clientip=clientip,
                payurl=f"http://{host}/{channel.id}/pay/submit/{trade_no}/",
                created_at=now,
            )
            channel.orders[trade_no] = order
            channel.by_out_trade_no[out_trade_no] = trade_no
        # EP-new's mapi success comes back as text/html (§9 Q2).
        return _text(php_json({"code": CODE_OK, "trade_no": order.trade_no, "payurl": order.payurl}))

    async def _api(self, request: Request, channel: EpayChannel) -> Response:
        """``api.php`` (GET, key in the query), EP-new replies with EP-old's text/html content type (§2.5)."""
        q = request.query_params
        act = q.get("act")
        if act not in ("query", "settle", "order", "orders"):
            return _api_reply({"code": CODE_NO_ACT, "msg": "No Act!"})
        pid = _intval(q.get("pid", ""))
        if pid == 0 or pid != channel.pid:
            return _api_reply({"code": CODE_AUTH_ERROR, "msg": "商户ID不存在"})
        if not hmac.compare_digest(q.get("key", "").encode("utf-8"), channel.key.encode("utf-8")):
            return _api_reply({"code": CODE_AUTH_ERROR, "msg": "商户密钥错误"})

        if act == "order":
            if q.get("trade_no"):
                order = channel.orders.get(q["trade_no"])
            elif q.get("out_trade_no"):
                order = channel.orders.get(channel.by_out_trade_no.get(q["out_trade_no"], ""))
            else:
                return _api_reply({"code": CODE_MISSING, "msg": "订单号不能为空"})
            if order is None:
                return _api_reply({"code": CODE_ERROR, "msg": "订单号不存在"})
            row = order.row(channel.pid)
            return _api_reply(
                {
                    "code": CODE_OK,
                    "msg": "succ",
                    "trade_no": row.pop("trade_no"),
                    "out_trade_no": row.pop("out_trade_no"),
                    "api_trade_no": None,
                    "bill_trade_no": None,
                    **row,
                    "payurl": order.payurl,
                }
            )

        limit = min(_intval(q.get("limit", "10")), 50)
        offset = max(_intval(q.get("offset", "0")), 0)
        if act == "orders":
            orders = sorted(channel.orders.values(), key=lambda o: o.trade_no, reverse=True)
            if "status" in q:
                status = _intval(q["status"])
                orders = [o for o in orders if o.status == status]
            rows = [o.row(channel.pid) for o in orders[offset : offset + max(limit, 0)]]
            if not rows:
                # PHP 8: count() of an undefined $data is a TypeError -> 500 with an empty body (§9 Q4).
                return Response(status_code=500)
            return _api_reply(
                {"code": CODE_OK, "msg": "查询订单记录成功！", "count": len(rows), "data": rows}
            )

        if act == "settle":
            settles = list(reversed(channel.settlements))[offset : offset + max(limit, 0)]
            return _api_reply({"code": CODE_OK, "msg": "查询结算记录成功！", "data": settles or None})

        today = format_epay_time(self._clock.now())[:10]
        yesterday = format_epay_time(self._clock.now() - timedelta(days=1))[:10]
        paid_days = [format_epay_time(o.paid_at)[:10] for o in channel.orders.values() if o.paid_at]
        return _api_reply(
            {
                "code": CODE_OK,
                "pid": channel.pid,
                "key": channel.key,  # real servers echo the key (§9 Q7)
                "active": 1,
                "money": f"{channel.balance:.2f}",
                "type": 1,
                "account": "sim@example.com",
                "username": "模拟商户",
                "orders": len(channel.orders),
                "orders_today": paid_days.count(today),
                "orders_lastday": paid_days.count(yesterday),
            }
        )

    async def _pay_page(self, request: Request, channel: EpayChannel) -> Response:
        """The page a ``payurl`` points to. Visiting it does not pay: ``buyer_visits`` simulates buyers."""
        order = channel.orders.get(request.path_params["trade_no"])
        if order is None:
            return _text(_SYSMSG.format(msg="该订单号不存在，请返回来源地重新发起请求！"))
        return _text(
            '<!DOCTYPE html><html><head><meta charset="utf-8">'
            "<title>正在为您跳转到支付页面，请稍候...</title></head>"
            f"<body><p>订单号 {order.trade_no}，金额 ￥{order.money:.2f}</p></body></html>"
        )

    # ---- notify ------------------------------------------------------------------------------------

    async def _notify(self, channel: EpayChannel, order: _Order, delay_s: float) -> None:
        """One notify attempt (§2.4): GET, 5 s timeout, no redirects; acked if the body says success."""
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        params = notify_params(
            pid=channel.pid,
            trade_no=order.trade_no,
            out_trade_no=order.out_trade_no,
            type=order.type,
            name=order.name,
            money=order.money,
            key=channel.key,
            param=order.param,
        )
        at = self._clock.now()
        client = self.notify_client(timeout=NOTIFY_TIMEOUT_S, headers=NOTIFY_HEADERS)
        try:
            reply = await client.get(url_with_query(order.notify_url, params))
            attempt = NotifyAttempt(at, reply.status_code, is_notify_ack(reply.text))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            attempt = NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
        order.attempts.append(attempt)

    def _new_trade_no(self, now: datetime) -> str:
        """Beijing-time ``YmdHis`` + ``rand(11111, 99999)`` (§9 Q16); redrawn on a clash (a PK conflict)."""
        prefix = now.astimezone(EPAY_TZ).strftime("%Y%m%d%H%M%S")
        while True:
            trade_no = f"{prefix}{self._rng.randint(11111, 99999)}"
            if all(trade_no not in c.orders for c in self._channels.values()):
                return trade_no


# ---- PHP-isms --------------------------------------------------------------------------------------


def php_json(value: object, *, unescaped_unicode: bool = False) -> str:
    """``json_encode`` with PHP's default flags: ``\\uXXXX`` for non-ASCII and ``\\/`` for ``/``.

    ``unescaped_unicode`` adds ``JSON_UNESCAPED_UNICODE`` (raw UTF-8; ``/`` is still escaped).
    """
    text = json.dumps(value, ensure_ascii=not unescaped_unicode, separators=(",", ":"))
    return text.replace("/", "\\/")  # '/' only ever occurs inside JSON strings


def _text(body: str, content_type: str = _HTML) -> Response:
    return Response(body.encode("utf-8"), headers={"Content-type": content_type})


def _api_reply(body: dict[str, object]) -> Response:
    return _text(php_json(body))


def _mapi_error(msg: str, code: int = CODE_ERROR) -> Response:
    """EP-new ``echojsonmsg``: JSON_UNESCAPED_UNICODE, application/json (§9 Q1, Q2)."""
    return _text(php_json({"code": code, "msg": msg}, unescaped_unicode=True), _JSON)


async def _form(request: Request) -> dict[str, str]:
    """``$_POST``: only urlencoded bodies are parsed (last value wins, as PHP does)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _intval(text: str) -> int:
    match = re.match(r"\s*[+-]?\d+", text)
    return int(match.group()) if match else 0


def _php_empty(text: str) -> bool:
    return text in ("", "0")


def _php_escape(text: str) -> str:
    """``htmlspecialchars(addslashes(v))``: how submit/mapi store ``name`` and ``param`` (§9 Q6)."""
    slashed = text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\0", "\\0")
    return (
        slashed.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#039;").replace("<", "&lt;")
    ).replace(">", "&gt;")


def _cut_bytes(text: str, limit: int) -> str:
    """``mb_strcut``: at most ``limit`` UTF-8 bytes, never splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _parse_money(text: str) -> Decimal | None:
    """A positive amount as the DB stores it (decimal(10,2)), or None where epay says 金额不合法."""
    if not _MONEY.match(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    stored = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    return stored if stored <= _MAX_MONEY else None
