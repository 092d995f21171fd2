"""What the simulated epay V1 and V2 gateways share (``epay.py``, ``epay_v2.py``): merchants and orders,
simulated buyers who pay with the channel's :class:`~monitor.sim.faults.Faults` (pay probability, callback delay,
dropped / duplicated / badly signed notifies), notify retries on epay's ``cron.php`` schedule,
balance growth and settlement stalls, the pay page, and the ground truth of every order.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response

from monitor.clock import Clock
from monitor.protocols import epay as v1
from monitor.sim import php
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll
from monitor.sim.php import text

__all__ = ["BANNED_MSG", "MAINTENANCE_MSG", "EpayChannel", "EpayMerchant", "EpayOrder", "EpaySite", "Flavour",
           "corrupt_sign"]

Flavour = Literal["old", "new"]

MAINTENANCE_MSG = "系统维护中，请稍后再试"
#: What epay answers a create for a banned merchant (``pre_user.status`` 0).
BANNED_MSG = "商户已封禁，无法支付！"

_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_OUT_TRADE_NO = re.compile(r"^[a-zA-Z0-9._\-|]+$")
_CENT = Decimal("0.01")
_SETTLE_PENDING, _SETTLE_DONE, _SETTLE_RUNNING = 0, 1, 2
_SYSMSG = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>站点提示信息</title></head>'
           '<body id="error-page"><h3>站点提示信息</h3>{msg}</body></html>')


@dataclass(slots=True)
class EpayOrder:
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
    status: int = v1.STATUS_UNPAID
    paid_at: datetime | None = None
    buyer: str | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)

    def row(self, pid: int) -> dict[str, object]:
        """The order as ``api.php act=orders`` lists it (money a decimal string, status an int)."""
        return {
            "trade_no": self.trade_no, "out_trade_no": self.out_trade_no, "type": self.type, "pid": pid,
            "addtime": v1.format_epay_time(self.created_at),
            "endtime": v1.format_epay_time(self.paid_at) if self.paid_at else None,
            "name": self.name, "money": f"{self.money:.2f}", "param": self.param, "buyer": self.buyer,
            "status": self.status,
        }


@dataclass(slots=True, kw_only=True)
class EpayMerchant:
    """What every simulated epay merchant has, whichever API version it speaks: orders (``trade_no`` → order),
    balance, settlement records."""

    id: str
    pid: int
    faults: Faults
    #: Unsettled balance, including the growth accrued up to ``accrued_at`` (full precision; shown to 0.01).
    balance: Decimal = Decimal("0.00")
    accrued_at: datetime | None = None
    orders: dict[str, EpayOrder] = field(default_factory=dict)
    by_out_trade_no: dict[str, str] = field(default_factory=dict)
    settlements: list[dict[str, object]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class EpayChannel(EpayMerchant):
    """A V1 merchant: its MD5 key and the server flavour it runs on."""

    key: str
    flavour: Flavour = "new"


M = TypeVar("M", bound=EpayMerchant)


class EpaySite(GatewayBase[M]):
    """An epay site's behaviour shared by V1 and V2: buyers, notifies with cron retries, balance, settlement,
    order creation, the pay page, ground truth. Subclasses add the API and say how a notify is signed.

    ``notify_retry_delays``: seconds between notify attempts after a failed first one (None: epay's real
    schedule, :data:`monitor.protocols.epay.NOTIFY_RETRY_DELAYS`); ``cron_notify=False``: the operator never
    configured ``cron.php``, so a failed notify is never retried.
    """

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None,
                 hang_s: float = HANG_SECONDS, notify_retry_delays: Sequence[float] | None = None,
                 cron_notify: bool = True) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        delays = v1.NOTIFY_RETRY_DELAYS if notify_retry_delays is None else tuple(notify_retry_delays)
        if any(d < 0 for d in delays):
            raise ValueError("notify retry delays must be >= 0 seconds")
        self._retry_delays: tuple[float, ...] = tuple(delays) if cron_notify else ()

    def _register(self, channel: M) -> M:
        if not _CHANNEL_ID.match(channel.id):
            raise ValueError(f"channel id must match {_CHANNEL_ID.pattern}: {channel.id!r}")
        if channel.id in self._channels:
            raise ValueError(f"channel {channel.id!r} already exists")
        channel.accrued_at = self._clock.now()
        self._channels[channel.id] = channel
        return channel

    # ---- buyers, balance, settlement, ground truth -------------------------------------------------

    def buyer_visits(self, channel_id: str, trade_no: str) -> bool:
        """A buyer reaches the pay page of an order. Returns True if they paid.

        With the channel's ``pay_probability`` the order becomes paid (status 1, endtime now, balance credited)
        and, unless dropped with ``callback_drop_rate``, a notify is sent after ``callback_delay``: twice with
        ``duplicate_callback_rate``, with a corrupted signature (on every attempt) with ``bad_signature_rate``.
        With ``held_rate`` the money is only held instead: status 3 已冻结 on EP-old, 4 预授权 on EP-new,
        no endtime, no notify, nothing credited; with ``refund_rate`` a paid order is refunded right away (status
        2, endtime kept, the balance debited again).
        Already paid orders are left alone (False); an unknown order is a ``KeyError``. Must be called from the
        running event loop that serves the app.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(trade_no)
        if order is None:
            raise KeyError(f"no order {trade_no!r} on channel {channel_id!r}")
        faults = channel.faults
        if order.status != v1.STATUS_UNPAID or not roll(faults.pay_probability, self._rng):
            return False
        order.buyer = f"20880{self._rng.randint(10**10, 10**11 - 1)}"
        if roll(faults.held_rate, self._rng):
            order.status = v1.STATUS_FROZEN if getattr(channel, "flavour", "new") == "old" else v1.STATUS_PREAUTH
            return True
        order.status = v1.STATUS_PAID
        order.paid_at = self._clock.now()
        self._accrue(channel)
        channel.balance += order.money
        if roll(faults.refund_rate, self._rng):
            order.status = v1.STATUS_REFUNDED
            channel.balance -= order.money
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
            return True
        delay = faults.callback_delay(self._rng)
        copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
        corrupt = faults.bad_signature(self._rng)
        self.schedule(self._notify(channel, order, delay, copies, corrupt))
        return True

    def _accrue(self, channel: M) -> Decimal:
        """Add ``balance_growth_per_min`` for the gateway-clock time since the last accrual; the balance to 0.01."""
        now = self._clock.now()
        since = channel.accrued_at or now
        rate = channel.faults.balance_growth_per_min
        if rate > 0 and now > since:
            channel.balance += Decimal(str(rate)) * Decimal((now - since).total_seconds()) / 60
        channel.accrued_at = max(now, since)
        return channel.balance.quantize(_CENT, rounding=ROUND_HALF_UP)

    def balance(self, channel_id: str) -> Decimal:
        """The channel's unsettled balance now, as ``act=query`` shows it."""
        return self._accrue(self.channel(channel_id))

    def settle(self, channel_id: str) -> dict[str, object]:
        """Settle the channel's balance; returns the new ``pre_settle`` row (``act=settle`` lists it).

        Normally the balance is paid out in a completed record (status 1). With ``settlement_stall`` the record
        stays 正在结算 (2), or 待结算 (0) when an earlier one is still stuck, and the balance is not paid out.
        """
        channel = self.channel(channel_id)
        amount = self._accrue(channel)
        now = v1.format_epay_time(self._clock.now())
        stalled = channel.faults.settlement_stall
        if stalled:
            stuck = any(r["status"] in (_SETTLE_PENDING, _SETTLE_RUNNING) for r in channel.settlements)
            status = _SETTLE_PENDING if stuck else _SETTLE_RUNNING
        else:
            status = _SETTLE_DONE
        row: dict[str, object] = {
            "id": len(channel.settlements) + 1, "uid": channel.pid, "batch": now[:10].replace("-", ""),
            "auto": 1, "type": 1, "account": "sim@example.com", "username": "模拟商户",
            "money": f"{amount:.2f}", "realmoney": f"{amount:.2f}", "addtime": now,
            "endtime": None if stalled else now, "status": status, "transfer_status": 0,
            "transfer_result": None, "transfer_date": None, "result": None,
        }
        channel.settlements.append(row)
        if not stalled:
            channel.balance = Decimal("0.00")
        return row

    def ground_truth(self) -> list[OrderTruth]:
        """Every order of every channel, in creation order per channel, as it really stands now."""
        return [
            truth_from_attempts(channel.id, o.trade_no, o.out_trade_no, o.money, o.created_at,
                                o.status in (v1.STATUS_PAID, v1.STATUS_REFUNDED), o.paid_at, o.callback_dropped,
                                o.attempts, held=o.status in (v1.STATUS_FROZEN, v1.STATUS_PREAUTH),
                                refunded=o.status == v1.STATUS_REFUNDED)
            for channel in self._channels.values()
            for o in channel.orders.values()
        ]

    # ---- orders and the pay page -------------------------------------------------------------------

    def _create_order(self, request: Request, channel: M, params: dict[str, str]) -> EpayOrder | str:
        """``Pay::create`` after authentication: validate, then create the order or reuse an unpaid one with
        the same ``out_trade_no``. Returns the order, or the error message epay answers (a banned
        merchant's create is refused before anything else is checked)."""
        if channel.faults.merchant_banned:
            return BANNED_MSG
        out_trade_no = params.get("out_trade_no", "")
        notify_url = params.get("notify_url", "")
        return_url = params.get("return_url", "")
        money_text = params.get("money", "")
        type_ = params.get("type", "")
        clientip = params.get("clientip", "")
        name = php.php_escape(params.get("name", ""))
        param = php.php_escape(params["param"]) if "param" in params else None
        for value, label in ((out_trade_no, "订单号(out_trade_no)"), (notify_url, "通知地址(notify_url)"),
                             (name, "商品名称(name)"), (money_text, "金额(money)"), (type_, "支付方式(type)"),
                             (clientip, "用户IP地址(clientip)")):
            if php.php_empty(value):
                return f"{label}不能为空"
        money = php.parse_money(money_text)
        if money is None:
            return "金额不合法"
        if not _OUT_TRADE_NO.match(out_trade_no):
            return "订单号(out_trade_no)格式不正确"
        name = php.cut_bytes(name, 127)
        now = self._clock.now()

        old = channel.orders.get(channel.by_out_trade_no.get(out_trade_no, ""))
        if old is not None and now - old.created_at < v1.RESUBMIT_WINDOW:
            if old.status != v1.STATUS_UNPAID:
                return f"该订单({out_trade_no})已完成支付，请勿重复发起支付"
            if (old.money, old.name, old.notify_url, old.return_url, old.param) != (
                money, name, notify_url, return_url, param
            ):
                return f"该订单({out_trade_no})支付参数有变化，请更换订单号重新发起支付"
            old.type = type_
            return old
        trade_no = self._new_trade_no(now)
        host = request.headers.get("host", "127.0.0.1")  # $siteurl comes from the Host header
        order = EpayOrder(trade_no=trade_no, out_trade_no=out_trade_no, type=type_, name=name, money=money,
                          notify_url=notify_url, return_url=return_url, param=param, clientip=clientip,
                          payurl=f"http://{host}/{channel.id}/pay/submit/{trade_no}/", created_at=now)
        channel.orders[trade_no] = order
        channel.by_out_trade_no[out_trade_no] = trade_no
        return order

    def _find(self, channel: M, trade_no: str | None, out_trade_no: str | None) -> EpayOrder | None:
        if trade_no is not None:
            return channel.orders.get(trade_no)
        return channel.orders.get(channel.by_out_trade_no.get(out_trade_no or "", ""))

    def _paid_on(self, channel: M, days_ago: int) -> list[EpayOrder]:
        """Paid orders whose Beijing payment date is today minus ``days_ago``."""
        day = v1.format_epay_time(self._clock.now() - timedelta(days=days_ago))[:10]
        return [o for o in channel.orders.values()
                if o.status == v1.STATUS_PAID and o.paid_at and v1.format_epay_time(o.paid_at)[:10] == day]

    async def _pay_page(self, request: Request, channel: M) -> Response:
        """The page a ``payurl`` points to. Visiting it does not pay: ``buyer_visits`` simulates buyers."""
        order = channel.orders.get(request.path_params["trade_no"])
        if order is None:
            return text(_SYSMSG.format(msg="该订单号不存在，请返回来源地重新发起请求！"))
        return text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>正在为您跳转到支付页面，请稍候...</title>'
                    f"</head><body><p>订单号 {order.trade_no}，金额 ￥{order.money:.2f}</p></body></html>")

    def _new_trade_no(self, now: datetime) -> str:
        """Beijing-time ``YmdHis`` + ``rand(11111, 99999)``; redrawn on a clash (a PK conflict)."""
        prefix = now.astimezone(v1.EPAY_TZ).strftime("%Y%m%d%H%M%S")
        while True:
            trade_no = f"{prefix}{self._rng.randint(11111, 99999)}"
            if all(trade_no not in c.orders for c in self._channels.values()):
                return trade_no

    # ---- notify ------------------------------------------------------------------------------------

    def _notify_query(self, channel: M, order: EpayOrder) -> dict[str, str]:
        """The signed notify parameters of one attempt (built afresh each time, as ``creat_callback`` is)."""
        raise NotImplementedError

    async def _notify(self, channel: M, order: EpayOrder, delay_s: float, copies: int, corrupt: bool) -> None:
        """Deliver the notify: ``copies`` sends of the first attempt, then cron retries until acknowledged."""
        if delay_s > 0 and await self._pause(delay_s):
            return

        async def send_once() -> NotifyAttempt:
            # As epay's curl does it: GET, 5 s timeout, no redirects; acked if the body contains success.
            params = self._notify_query(channel, order)
            if corrupt:
                params["sign"] = corrupt_sign(params["sign"])
            at = self._clock.now()
            client = self.notify_client(timeout=v1.NOTIFY_TIMEOUT_S, headers=v1.NOTIFY_HEADERS)
            try:
                reply = await client.get(v1.url_with_query(order.notify_url, params))
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            return NotifyAttempt(at, reply.status_code, v1.is_notify_ack(reply.text))

        for _ in range(copies - 1):
            order.attempts.append(await send_once())
        await self.deliver(send_once, order.attempts, self._retry_delays)


def corrupt_sign(sign: str) -> str:
    """A well-formed but wrong signature: an MD5 hex digest with its first digit changed, or base64 (RSA) with
    the last byte's low bit flipped."""
    if re.fullmatch(r"[0-9a-f]{32}", sign):
        return ("1" if sign[0] == "0" else "0") + sign[1:]
    try:
        raw = bytearray(base64.b64decode(sign, validate=True))
    except (binascii.Error, ValueError):
        raw = bytearray()
    if not raw:
        return "0" * 32
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode("ascii")


