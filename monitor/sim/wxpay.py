"""A simulated WeChat Pay API v2 gateway (kind ``wxpay_v2``): Native orders, query, close, XML notifies.

Each channel is one merchant (``appid``, ``mch_id``, API v2 ``key``) under its own path prefix, serving the real
paths ``/{channel}/pay/unifiedorder``, ``/{channel}/pay/orderquery`` and ``/{channel}/pay/closeorder``, so a client
whose base URL is ``http://127.0.0.1:PORT/{channel}/`` instead of ``https://api.mch.weixin.qq.com/`` speaks the
protocol unchanged. Replies follow WeChat's two levels: ``return_code FAIL`` with
a ``return_msg`` (unsigned) for communication errors such as a bad signature, ``result_code FAIL`` with an
``err_code`` (signed) for business errors such as ORDERPAID. The exact ``return_msg`` wording of the
communication errors other than ``签名错误`` is a close guess, not read from WeChat.

Simulated buyers (:meth:`WxpayGateway.buyer_visits`) pay with the channel's pay probability; the signed XML notify
then follows WeChat's retry schedule until the shop acknowledges it. The malformed-body fault answers truncated
XML, the maintenance fault a signed ``SYSTEMERROR`` (系统繁忙,请稍后再试).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols.wxpay import (
    DEFAULT_NOTIFY_RETRY_DELAYS,
    FAIL,
    SUCCESS,
    WXPAY_TZ,
    WxpayXmlError,
    format_time_end,
    from_fen,
    is_notify_ack,
    parse_xml,
    sign_md5,
    to_xml,
    verify,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["WxpayChannel", "WxpayGateway"]

NOTPAY, PAID, CLOSED, REFUND, USERPAYING = "NOTPAY", "SUCCESS", "CLOSED", "REFUND", "USERPAYING"
_STATE_DESC = {NOTPAY: "订单未支付", PAID: "支付成功", CLOSED: "订单已关闭", REFUND: "订单发生过退款",
               USERPAYING: "需要用户输入支付密码"}
_XML_TYPE = "text/plain"  # what api.mch.weixin.qq.com labels its XML replies
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_TRADE_TYPES = frozenset({"JSAPI", "NATIVE", "APP", "MWEB"})
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


@dataclass(slots=True)
class _Order:
    """One order as WeChat keeps it, plus the simulator's notify bookkeeping."""

    out_trade_no: str
    prepay_id: str
    code_url: str
    body: str
    total_fee: int
    notify_url: str
    attach: str | None
    created_at: datetime
    state: str = NOTPAY
    transaction_id: str | None = None
    openid: str | None = None
    paid_at: datetime | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)


@dataclass(slots=True)
class WxpayChannel:
    """One simulated merchant: credentials (the key never appears in ``repr``), fault knobs and orders."""

    id: str
    appid: str
    mch_id: str
    key: str = field(repr=False)
    faults: Faults
    orders: dict[str, _Order] = field(default_factory=dict)  # out_trade_no -> order
    by_transaction_id: dict[str, str] = field(default_factory=dict)
    by_prepay_id: dict[str, str] = field(default_factory=dict)


class WxpayGateway(GatewayBase[WxpayChannel]):
    """The simulated WeChat Pay v2 gateway; add channels, serve :attr:`app` (e.g. with ``SimServer.add_gateway``).

    ``notify_retry_delays`` are the waits in seconds between notify attempts (default WeChat's 15 s … 6 h
    schedule); ``accept_plain_success`` makes a reply body of exactly ``success`` count as an ack besides the
    XML one (dujiaoka's answer, whose acceptance by WeChat is UNCONFIRMED); ``notify_timeout_s`` bounds each
    attempt.
    """

    kind = "wxpay_v2"
    bad_body = (
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg>"
        "<appid><![CDATA[wx"
    )
    bad_body_type = _XML_TYPE

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        hang_s: float = HANG_SECONDS,
        notify_retry_delays: Sequence[float] = DEFAULT_NOTIFY_RETRY_DELAYS,
        accept_plain_success: bool = True,
        notify_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        if any(d < 0 for d in notify_retry_delays):
            raise ValueError("notify retry delays must be >= 0 seconds")
        self.notify_retry_delays: tuple[float, ...] = tuple(notify_retry_delays)
        self.accept_plain_success = accept_plain_success
        self.notify_timeout_s = notify_timeout_s
        self.app = Starlette(routes=[
            Route("/{channel}/pay/unifiedorder", self.guarded(self._unifiedorder), methods=["POST"]),
            Route("/{channel}/pay/orderquery", self.guarded(self._orderquery), methods=["POST"]),
            Route("/{channel}/pay/closeorder", self.guarded(self._closeorder), methods=["POST"]),
        ])

    # ---- channels, buyers, ground truth ------------------------------------------------------------

    def add_channel(
        self, channel_id: str, *, appid: str, mch_id: str, key: str, faults: Faults | None = None
    ) -> WxpayChannel:
        """Add a merchant served under ``/{channel_id}/``; ``ValueError`` for a bad or duplicate id or an empty
        credential."""
        if not _CHANNEL_ID.match(channel_id):
            raise ValueError(f"channel id must match {_CHANNEL_ID.pattern}: {channel_id!r}")
        if channel_id in self._channels:
            raise ValueError(f"channel {channel_id!r} already exists")
        if not (appid and mch_id and key):
            raise ValueError("appid, mch_id and key must not be empty")
        channel = WxpayChannel(channel_id, appid, mch_id, key, faults if faults is not None else Faults())
        self._channels[channel_id] = channel
        return channel

    def buyer_visits(self, channel_id: str, ref: str) -> bool:
        """A buyer scans the order ``ref`` (its ``out_trade_no`` or ``prepay_id``). Returns True if they paid.

        With the channel's ``pay_probability`` a NOTPAY order becomes SUCCESS and, unless dropped with
        ``callback_drop_rate``, its notify goes out after the callback delay (twice with
        ``duplicate_callback_rate``). With ``paying_rate`` the buyer never finishes entering the password
        instead (``USERPAYING``, no notify; returns False); with ``refund_rate`` a paid order is refunded right
        after (``REFUND``; the notify still follows the callback knobs). Paid or closed orders are left alone
        (False); an unknown one is a ``KeyError``. Call it from the event loop that serves :attr:`app`.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(ref) or channel.orders.get(channel.by_prepay_id.get(ref, ""))
        if order is None:
            raise KeyError(f"no order {ref!r} on channel {channel_id!r}")
        faults = channel.faults
        if order.state != NOTPAY or not roll(faults.pay_probability, self._rng):
            return False
        if roll(faults.paying_rate, self._rng):
            order.state = USERPAYING
            return False
        now = self._clock.now()
        order.state, order.paid_at = PAID, now
        order.transaction_id = self._new_transaction_id(now)
        order.openid = "oUpF8u" + "".join(self._rng.choice(_ALNUM + "-_") for _ in range(22))
        channel.by_transaction_id[order.transaction_id] = order.out_trade_no
        if roll(faults.refund_rate, self._rng):
            order.state = REFUND
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
            return True
        copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
        self.schedule(self._notify(channel, order, faults.callback_delay(self._rng), copies))
        return True

    def ground_truth(self) -> list[OrderTruth]:
        """Every order of every channel as it really stands. ``trade_no`` is the ``transaction_id`` once paid and
        the ``prepay_id`` before; ``money`` is ``total_fee`` in CNY."""
        return [
            truth_from_attempts(channel.id, o.transaction_id or o.prepay_id, o.out_trade_no, from_fen(o.total_fee),
                                o.created_at, o.state in (PAID, REFUND), o.paid_at, o.callback_dropped, o.attempts,
                                refunded=o.state == REFUND)
            for channel in self._channels.values()
            for o in channel.orders.values()
        ]

    # ---- replies -----------------------------------------------------------------------------------

    def _signed(self, channel: WxpayChannel, fields: dict[str, object]) -> Response:
        """A reply that passed the communication checks: return_code SUCCESS, merchant ids, nonce, ``fields``,
        signed with the merchant key (corrupted when the bad-signature fault fires)."""
        reply: dict[str, object] = {
            "return_code": SUCCESS,
            "return_msg": "OK",
            "appid": channel.appid,
            "mch_id": channel.mch_id,
            "nonce_str": self._nonce(),
            **fields,
        }
        reply["sign"] = self._signature(channel, reply)
        return Response(to_xml(reply), media_type=_XML_TYPE)

    def _business_error(self, channel: WxpayChannel, err_code: str, des: str) -> Response:
        return self._signed(channel, {"result_code": FAIL, "err_code": err_code, "err_code_des": des})

    def _signature(self, channel: WxpayChannel, fields: dict[str, object]) -> str:
        sign = sign_md5(fields, channel.key)
        if channel.faults.bad_signature(self._rng):
            sign = sign[::-1] if sign[::-1] != sign else "0" * len(sign)
        return sign

    def maintenance_reply(self, request: Request, channel: WxpayChannel) -> Response:
        """WeChat's "system busy": a signed business error SYSTEMERROR."""
        return self._business_error(channel, "SYSTEMERROR", "系统繁忙,请稍后再试")

    # ---- HTTP --------------------------------------------------------------------------------------

    async def _checked(self, request: Request, channel: WxpayChannel, *required: str) -> dict[str, str] | Response:
        """The request's fields once the communication checks pass, else the ``return_code FAIL`` reply."""
        raw = await request.body()
        if not raw.strip():
            return _comm_error("post数据为空")
        try:
            params = parse_xml(raw)
        except WxpayXmlError:
            return _comm_error("XML格式错误")
        for name in ("appid", "mch_id", "nonce_str", "sign", *required):
            if not params.get(name):
                return _comm_error(f"缺少参数{name}")
        if params["appid"] != channel.appid or params["mch_id"] != channel.mch_id:
            return _comm_error("商户号mch_id与appid不匹配")
        if params.get("sign_type", "MD5") != "MD5" or not verify(params, channel.key):
            return _comm_error("签名错误")
        return params

    async def _unifiedorder(self, request: Request, channel: WxpayChannel) -> Response:
        """``pay/unifiedorder``: a Native order gets a ``prepay_id`` and a ``code_url``."""
        params = await self._checked(
            request, channel, "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"
        )
        if isinstance(params, Response):
            return params
        fee_text, out_trade_no, trade_type = params["total_fee"], params["out_trade_no"], params["trade_type"]
        if not fee_text.isdigit() or int(fee_text) <= 0:
            return _comm_error("invalid total_fee")
        if len(out_trade_no) > 32:
            return _comm_error("out_trade_no参数长度有误")
        if trade_type not in _TRADE_TYPES:
            return _comm_error("trade_type参数格式错误")
        if trade_type != "NATIVE":
            return self._business_error(channel, "NOAUTH", "商户无此接口权限")
        total_fee = int(fee_text)
        old = channel.orders.get(out_trade_no)
        if old is not None:
            if old.state in (PAID, REFUND):
                return self._business_error(channel, "ORDERPAID", "该订单已支付")
            if old.state == CLOSED:
                return self._business_error(channel, "ORDERCLOSED", "该订单已关闭")
            if (old.body, old.total_fee, old.notify_url) != (params["body"], total_fee, params["notify_url"]):
                return self._business_error(channel, "OUT_TRADE_NO_USED", "商户订单号重复")
            order = old  # the same order again: WeChat hands back the same prepay_id
        else:
            now = self._clock.now()
            prepay_id = "wx" + now.astimezone(WXPAY_TZ).strftime("%d%H%M%S") + self._token(_HEX, 24)
            order = _Order(
                out_trade_no=out_trade_no,
                prepay_id=prepay_id,
                code_url="weixin://wxpay/bizpayurl?pr=" + self._token(_ALNUM, 7),
                body=params["body"],
                total_fee=total_fee,
                notify_url=params["notify_url"],
                attach=params.get("attach") or None,
                created_at=now,
            )
            channel.orders[out_trade_no] = order
            channel.by_prepay_id[prepay_id] = out_trade_no
        return self._signed(channel, {
            "result_code": SUCCESS,
            "prepay_id": order.prepay_id,
            "trade_type": "NATIVE",
            "code_url": order.code_url,
        })

    def _find(self, channel: WxpayChannel, params: dict[str, str]) -> _Order | None:
        """The order named by ``transaction_id`` (preferred, as WeChat does) or ``out_trade_no``."""
        if params.get("transaction_id"):
            return channel.orders.get(channel.by_transaction_id.get(params["transaction_id"], ""))
        return channel.orders.get(params.get("out_trade_no", ""))

    async def _orderquery(self, request: Request, channel: WxpayChannel) -> Response:
        """``pay/orderquery``: ``trade_state`` and, once paid, the payment details."""
        params = await self._checked(request, channel)
        if isinstance(params, Response):
            return params
        if not params.get("transaction_id") and not params.get("out_trade_no"):
            return _comm_error("缺少参数out_trade_no")
        order = self._find(channel, params)
        if order is None:
            return self._business_error(channel, "ORDERNOTEXIST", "订单不存在")
        fields: dict[str, object] = {"result_code": SUCCESS, "out_trade_no": order.out_trade_no}
        if order.state in (PAID, REFUND):
            assert order.transaction_id is not None and order.paid_at is not None
            fields.update({
                "openid": order.openid,
                "is_subscribe": "N",
                "trade_type": "NATIVE",
                "bank_type": "OTHERS",
                "total_fee": order.total_fee,
                "fee_type": "CNY",
                "cash_fee": order.total_fee,
                "transaction_id": order.transaction_id,
                "attach": order.attach,
                "time_end": format_time_end(order.paid_at),
            })
        fields.update({"trade_state": order.state, "trade_state_desc": _STATE_DESC[order.state]})
        return self._signed(channel, fields)

    async def _closeorder(self, request: Request, channel: WxpayChannel) -> Response:
        """``pay/closeorder``: NOTPAY becomes CLOSED; a paid order answers ORDERPAID."""
        params = await self._checked(request, channel, "out_trade_no")
        if isinstance(params, Response):
            return params
        order = channel.orders.get(params["out_trade_no"])
        if order is None:
            return self._business_error(channel, "ORDERNOTEXIST", "订单不存在")
        if order.state in (PAID, REFUND):
            return self._business_error(channel, "ORDERPAID", "订单已支付，不能发起关单")
        if order.state == CLOSED:
            return self._business_error(channel, "ORDERCLOSED", "订单已关闭，无法重复关闭")
        order.state = CLOSED
        return self._signed(channel, {"result_code": SUCCESS})

    # ---- notify ------------------------------------------------------------------------------------

    def notify_body(self, channel: WxpayChannel, order: _Order) -> str:
        """The signed XML of a paid order's notify; the signature is corrupted when the fault fires."""
        assert order.transaction_id is not None and order.paid_at is not None
        fields: dict[str, object] = {
            "appid": channel.appid,
            "attach": order.attach,
            "bank_type": "OTHERS",
            "cash_fee": order.total_fee,
            "fee_type": "CNY",
            "is_subscribe": "N",
            "mch_id": channel.mch_id,
            "nonce_str": self._nonce(),
            "openid": order.openid,
            "out_trade_no": order.out_trade_no,
            "result_code": SUCCESS,
            "return_code": SUCCESS,
            "time_end": format_time_end(order.paid_at),
            "total_fee": order.total_fee,
            "trade_type": "NATIVE",
            "transaction_id": order.transaction_id,
        }
        fields["sign"] = self._signature(channel, fields)
        return to_xml(fields)

    async def _notify(self, channel: WxpayChannel, order: _Order, delay_s: float, copies: int) -> None:
        """After ``delay_s``, deliver the notify (retrying on the schedule) ``copies`` times."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        body = self.notify_body(channel, order).encode("utf-8")
        client = self.notify_client()

        async def send_once() -> NotifyAttempt:
            at = self._clock.now()
            try:
                reply = await client.post(order.notify_url, content=body, timeout=self.notify_timeout_s,
                                          headers={"Content-Type": "text/xml"})
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            ack = is_notify_ack(reply.status_code, reply.text, accept_plain_success=self.accept_plain_success)
            return NotifyAttempt(at, reply.status_code, ack)

        for _ in range(copies):
            await self.deliver(send_once, order.attempts, self.notify_retry_delays)

    # ---- ids ---------------------------------------------------------------------------------------

    def _token(self, alphabet: str, n: int) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def _nonce(self) -> str:
        return self._token(_ALNUM, 32)

    def _new_transaction_id(self, now: datetime) -> str:
        """28 digits: ``42000`` + 5 digits + Beijing ``yyyyMMdd`` + 10 digits, unique across channels."""
        day = now.astimezone(WXPAY_TZ).strftime("%Y%m%d")
        while True:
            tid = f"42000{self._token(string.digits, 5)}{day}{self._token(string.digits, 10)}"
            if all(tid not in c.by_transaction_id for c in self._channels.values()):
                return tid


def _comm_error(msg: str) -> Response:
    """A communication-level failure: ``return_code FAIL`` and a message, unsigned."""
    return Response(to_xml({"return_code": FAIL, "return_msg": msg}), media_type=_XML_TYPE)
