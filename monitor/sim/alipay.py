"""A simulated Alipay OpenAPI gateway for 当面付 (face-to-face / QR) payments, several apps in one starlette app.

Each channel is one Alipay app (``app_id`` + the app's RSA public key, and the platform key pair Alipay signs
with) served at ``/{channel}/gateway.do``, the real gateway path, so a client whose gateway URL is
``http://127.0.0.1:PORT/{channel}/gateway.do`` speaks the real protocol unchanged.
Requests may be a urlencoded POST (YSD / dujiaoka, ``?charset=utf-8`` in the query) or a GET with every
parameter in the query (python-alipay-sdk); query and form parameters are merged. The request's RSA2 signature
is checked with the app public key, and every reply for a known app is signed with the platform private key
over the raw text of its ``<method>_response`` node. Methods: ``alipay.trade.precreate``, ``alipay.trade.query``
and ``alipay.trade.close``.

Simulator choices where the real gateway is not documented (UNCONFIRMED):

- An order precreated but never scanned is answered by ``alipay.trade.query`` as ``WAIT_BUYER_PAY`` (the real
  gateway probably says ``ACQ.TRADE_NOT_EXIST`` until a buyer scans the code), and can be closed.
- Replies for an unknown or missing ``app_id`` carry no ``sign`` (the gateway cannot know whose key to use);
  every other error is signed. Invalid business parameters answer ``40004 ACQ.INVALID_PARAMETER``.
- The first notify follows the payment after the channel's callback delay, then retries follow
  ``notify_retry_delays`` (the Alipay docs' 4m,10m,10m,1h,2h,6h,15h by default; antom says 2 m first).
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from monitor.clock import Clock
from monitor.protocols.alipay import (
    ALIPAY_TZ,
    CODE_BUSINESS_FAILED,
    CODE_INVALID_ARGUMENTS,
    CODE_OK,
    CODE_UNAVAILABLE,
    MSGS,
    PAID_STATUSES,
    SIGN_TYPE_RSA2,
    TRADE_CLOSED,
    TRADE_SUCCESS,
    WAIT_BUYER_PAY,
    check_public_params,
    error_node,
    format_alipay_time,
    format_amount,
    generate_private_key_pem,
    is_notify_ack,
    load_private_key,
    load_public_key,
    parse_amount,
    public_key_pem,
    response_json,
    response_node_name,
    sign_content,
    sign_response_node,
    sign_rsa2,
    verify_rsa2,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["DEFAULT_NOTIFY_RETRY_DELAYS", "METHODS", "AlipayChannel", "AlipayGateway"]

#: Seconds between notify retries after the first attempt: 4m, 10m, 10m, 1h, 2h, 6h, 15h (Alipay docs).
DEFAULT_NOTIFY_RETRY_DELAYS: tuple[float, ...] = (240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)
#: How long one notify waits for the merchant (not documented by Alipay; a simulator choice).
NOTIFY_TIMEOUT_S = 5.0
PRECREATE, QUERY, CLOSE = "alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close"
METHODS: frozenset[str] = frozenset({PRECREATE, QUERY, CLOSE})

_CONTENT_TYPE = "text/html;charset=utf-8"
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_OUT_TRADE_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_BAD_SIGN_MSG = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
_QR_CHARS = string.digits + string.ascii_lowercase


class _BizError(Exception):
    """A business failure (code 40004) of one method call."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.sub_code, self.sub_msg = sub_code, sub_msg


@dataclass(slots=True)
class _Order:
    """One trade as Alipay holds it, plus the simulator's bookkeeping."""

    trade_no: str
    out_trade_no: str
    subject: str
    total_amount: Decimal
    notify_url: str | None
    qr_code: str
    notify_id: str
    created_at: datetime
    status: str = WAIT_BUYER_PAY
    paid_at: datetime | None = None
    buyer_id: str | None = None
    buyer_logon_id: str | None = None
    callback_dropped: bool = False
    #: Paid, then refunded in full (``refund_rate``): the trade is ``TRADE_CLOSED`` since.
    refunded: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)


@dataclass(slots=True)
class AlipayChannel:
    """One simulated Alipay app: its keys (hidden from ``repr``), fault knobs and trades by ``out_trade_no``."""

    id: str
    app_id: str
    seller_id: str
    faults: Faults
    app_public_key: str = field(repr=False)
    platform_private_key: str = field(repr=False)
    orders: dict[str, _Order] = field(default_factory=dict)
    by_trade_no: dict[str, str] = field(default_factory=dict)
    #: The app's private key when the simulation knows it, so a simulated shop can sign its requests.
    app_private_key: str | None = field(default=None, repr=False)

    def find(self, trade_no: str | None, out_trade_no: str | None) -> _Order | None:
        """The order by ``trade_no`` (which wins when both are given) or ``out_trade_no``."""
        if trade_no:
            return self.orders.get(self.by_trade_no.get(trade_no, ""))
        return self.orders.get(out_trade_no or "")


class AlipayGateway(GatewayBase[AlipayChannel]):
    """The simulated Alipay gateway. Build it, add channels, serve :attr:`app` (``SimServer.add_gateway``).

    ``platform_private_key`` (PEM or bare base64) is the key every channel signs replies and notifies with
    unless its ``add_channel`` names its own; without one a 2048-bit key is generated once per gateway, on
    first need. ``notify_retry_delays`` are the seconds between notify attempts after the first.
    """

    kind = "alipay_f2f"

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        hang_s: float = HANG_SECONDS,
        platform_private_key: str | None = None,
        notify_retry_delays: Sequence[float] = DEFAULT_NOTIFY_RETRY_DELAYS,
    ) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        if platform_private_key is not None:
            load_private_key(platform_private_key)  # fail now on a bad key
        self._platform_key = platform_private_key
        self._retry_delays = tuple(float(d) for d in notify_retry_delays)
        self.app = Starlette(
            routes=[Route("/{channel}/gateway.do", self.guarded(self._gateway), methods=["GET", "POST"])]
        )

    # ---- channels ----------------------------------------------------------------------------------

    def add_channel(
        self,
        channel_id: str,
        *,
        faults: Faults | None = None,
        app_id: str,
        app_public_key: str | None = None,
        platform_private_key: str | None = None,
        seller_id: str | None = None,
        app_private_key: str | None = None,
    ) -> AlipayChannel:
        """Add an app served under ``/{channel_id}/``; ``ValueError`` for a bad id, duplicate or bad key.

        ``app_private_key`` is optional: kept (never shown) for a simulated shop that pays through this channel,
        and the app public key is derived from it when ``app_public_key`` is not given.
        """
        if not _CHANNEL_ID.match(channel_id):
            raise ValueError(f"channel id must match {_CHANNEL_ID.pattern}: {channel_id!r}")
        if channel_id in self._channels:
            raise ValueError(f"channel {channel_id!r} already exists")
        if not app_id:
            raise ValueError("app_id must not be empty")
        if app_private_key is not None:
            load_private_key(app_private_key)
            if app_public_key is None:
                app_public_key = public_key_pem(app_private_key)
        if app_public_key is None:
            raise ValueError("app_public_key (or app_private_key) is required")
        load_public_key(app_public_key)
        if platform_private_key is None:
            if self._platform_key is None:
                self._platform_key = generate_private_key_pem()
            platform_private_key = self._platform_key
        load_private_key(platform_private_key)
        channel = AlipayChannel(
            channel_id, app_id, seller_id or f"2088{self._rng.randint(10**11, 10**12 - 1)}",
            faults if faults is not None else Faults(), app_public_key, platform_private_key,
            app_private_key=app_private_key,
        )
        self._channels[channel_id] = channel
        return channel

    @property
    def notify_retry_delays(self) -> tuple[float, ...]:
        """Seconds between notify attempts after the first."""
        return self._retry_delays

    def platform_public_key_pem(self, channel_id: str) -> str:
        """The 支付宝公钥 a client of this channel verifies replies and notifies with (SPKI PEM)."""
        return public_key_pem(self.channel(channel_id).platform_private_key)

    # ---- buyers, ground truth ----------------------------------------------------------------------

    def buyer_visits(self, channel_id: str, ref: str) -> bool:
        """A buyer scans the QR code of order ``ref`` (its ``out_trade_no``, or its ``trade_no``). True if paid.

        With the channel's ``pay_probability`` the trade becomes ``TRADE_SUCCESS`` and, unless dropped with
        ``callback_drop_rate``, the signed notify is sent after the callback delay (twice with
        ``duplicate_callback_rate``), retried until acked. With ``refund_rate`` the trade is refunded in full
        right after (``TRADE_CLOSED``; the notify still follows the callback knobs). Paid or closed trades are
        left alone (False); an unknown one is a ``KeyError``. Must be called from the event loop that serves the
        app.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(ref) or channel.find(ref, None)
        if order is None:
            raise KeyError(f"no order {ref!r} on channel {channel_id!r}")
        faults = channel.faults
        if order.status != WAIT_BUYER_PAY or not roll(faults.pay_probability, self._rng):
            return False
        order.status = TRADE_SUCCESS
        order.paid_at = self._clock.now()
        order.buyer_id = f"2088{self._rng.randint(10**11, 10**12 - 1)}"
        order.buyer_logon_id = f"1{self._rng.randint(30, 99)}******{self._rng.randint(10, 99)}"
        if roll(faults.refund_rate, self._rng):
            order.status, order.refunded = TRADE_CLOSED, True
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
        elif order.notify_url:
            delay = faults.callback_delay(self._rng)
            copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
            for _ in range(copies):
                self.schedule(self._notify(channel, order, delay))
        return True

    def ground_truth(self) -> list[OrderTruth]:
        """Every trade of every channel, in creation order per channel, as it really stands now."""
        return [
            truth_from_attempts(channel.id, o.trade_no, o.out_trade_no, o.total_amount, o.created_at,
                                o.status in PAID_STATUSES or o.refunded, o.paid_at, o.callback_dropped, o.attempts,
                                refunded=o.refunded)
            for channel in self._channels.values()
            for o in channel.orders.values()
        ]

    # ---- HTTP --------------------------------------------------------------------------------------

    def maintenance_reply(self, request: Request, channel: AlipayChannel) -> Response:
        """A signed ``20000 Service Currently Unavailable / isp.unknow-error`` under the method's node.

        The method may only be in a POSTed form, which this synchronous hook cannot read, so the reply is
        built when it is sent.
        """

        async def build() -> Response:
            method = (await _params(request)).get("method", "")
            root = response_node_name(method) if method in METHODS else "error_response"
            return self._reply(channel, root, error_node(CODE_UNAVAILABLE, "isp.unknow-error", "系统繁忙"))

        return _Deferred(build)

    async def _gateway(self, request: Request, channel: AlipayChannel) -> Response:
        """``gateway.do``: public parameters, then the RSA2 signature, then the method."""
        params = await _params(request)
        method = params.get("method", "")
        root = response_node_name(method) if method in METHODS else "error_response"
        known_app = params.get("app_id") == channel.app_id
        problem = check_public_params(params, METHODS)
        if problem is None and not known_app:
            problem = error_node(CODE_INVALID_ARGUMENTS, "isv.invalid-app-id", "无效的AppID参数")
        if problem is None and not verify_rsa2(params, params["sign"], channel.app_public_key):
            msg = _BAD_SIGN_MSG + sign_content(params)
            problem = error_node(CODE_INVALID_ARGUMENTS, "isv.invalid-signature", msg)
        if problem is not None:
            return self._reply(channel, root, problem, signed=known_app)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
            if not isinstance(biz, dict):
                raise ValueError("biz_content is not a JSON object")
            handler = {PRECREATE: self._precreate, QUERY: self._query, CLOSE: self._close}[method]
            node = handler(channel, biz, params)
        except ValueError:
            node = error_node(CODE_BUSINESS_FAILED, "ACQ.INVALID_PARAMETER", "参数无效")
        except _BizError as exc:
            node = error_node(CODE_BUSINESS_FAILED, exc.sub_code, exc.sub_msg)
            if method == QUERY:  # the real query error carries these zero amounts
                node.update(_query_zeroes(biz))
        return self._reply(channel, root, node)

    def _precreate(self, channel: AlipayChannel, biz: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """``alipay.trade.precreate``: a new trade and its QR code; the same unpaid order again reuses both."""
        out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
        amount = parse_amount(biz.get("total_amount"))
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
            raise _BizError("ACQ.INVALID_PARAMETER", "参数无效")
        if not isinstance(subject, str) or not subject.strip() or amount is None:
            raise _BizError("ACQ.INVALID_PARAMETER", "参数无效")
        order = channel.orders.get(out_trade_no)
        if order is not None:
            if order.status in PAID_STATUSES:
                raise _BizError("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if order.status == TRADE_CLOSED:
                raise _BizError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if (order.total_amount, order.subject) != (amount, subject):
                raise _BizError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            order.notify_url = params.get("notify_url") or order.notify_url
        else:
            now = self._clock.now()
            order = _Order(
                trade_no=self._new_trade_no(now), out_trade_no=out_trade_no, subject=subject, total_amount=amount,
                notify_url=params.get("notify_url") or None,
                qr_code="https://qr.alipay.com/bax" + "".join(self._rng.choices(_QR_CHARS, k=21)),
                notify_id=f"{self._rng.getrandbits(128):032x}", created_at=now,
            )
            channel.orders[out_trade_no] = order
            channel.by_trade_no[order.trade_no] = out_trade_no
        return {"code": CODE_OK, "msg": MSGS[CODE_OK], "out_trade_no": out_trade_no, "qr_code": order.qr_code}

    def _query(self, channel: AlipayChannel, biz: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """``alipay.trade.query``. A precreated order nobody scanned answers ``WAIT_BUYER_PAY`` here;
        the real gateway may say ``ACQ.TRADE_NOT_EXIST`` for it (UNCONFIRMED)."""
        order = _lookup(channel, biz)
        paid = order.status in PAID_STATUSES
        node: dict[str, Any] = {"code": CODE_OK, "msg": MSGS[CODE_OK]}
        if paid:
            node.update(buyer_logon_id=order.buyer_logon_id, buyer_user_id=order.buyer_id)
        money = format_amount(order.total_amount) if paid else "0.00"
        node.update(
            buyer_pay_amount=money, invoice_amount=money, out_trade_no=order.out_trade_no, point_amount="0.00",
            receipt_amount=money,
        )
        if paid and order.paid_at is not None:
            node["send_pay_date"] = format_alipay_time(order.paid_at)
        node.update(
            total_amount=format_amount(order.total_amount), trade_no=order.trade_no, trade_status=order.status
        )
        return node

    def _close(self, channel: AlipayChannel, biz: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """``alipay.trade.close``: only a ``WAIT_BUYER_PAY`` trade closes; otherwise ``ACQ.TRADE_STATUS_ERROR``."""
        order = _lookup(channel, biz)
        if order.status != WAIT_BUYER_PAY:
            raise _BizError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        order.status = TRADE_CLOSED
        return {"code": CODE_OK, "msg": MSGS[CODE_OK], "trade_no": order.trade_no, "out_trade_no": order.out_trade_no}

    def _reply(self, channel: AlipayChannel, root: str, node: dict[str, Any], signed: bool = True) -> Response:
        """``{"<root>":{...},"sign":"..."}``, signed over the node's raw text (corrupted on ``bad_signature``)."""
        text = response_json(node)
        body = "{" + response_json(root) + ":" + text
        if signed:
            sign = self._sign(channel, lambda key: sign_response_node(text, key))
            body += ',"sign":' + response_json(sign)
        return Response((body + "}").encode("utf-8"), headers={"Content-Type": _CONTENT_TYPE})

    def _sign(self, channel: AlipayChannel, signer: Callable[[str], str]) -> str:
        sign = signer(channel.platform_private_key)
        return _corrupt(sign) if channel.faults.bad_signature(self._rng) else sign

    # ---- notify ------------------------------------------------------------------------------------

    async def _notify(self, channel: AlipayChannel, order: _Order, delay_s: float) -> None:
        """Wait the callback delay, then deliver the notify until acked or the retry schedule runs out."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        await self.deliver(lambda: self._send_notify(channel, order), order.attempts, self._retry_delays)

    async def _send_notify(self, channel: AlipayChannel, order: _Order) -> NotifyAttempt:
        """One POST of the ``trade_status_sync`` notify; acked when the body is exactly ``success``."""
        assert order.paid_at is not None and order.buyer_id is not None and order.notify_url
        at = self._clock.now()
        money = format_amount(order.total_amount)
        params = {
            "gmt_create": format_alipay_time(order.created_at), "charset": "utf-8", "seller_id": channel.seller_id,
            "subject": order.subject, "buyer_id": order.buyer_id, "notify_id": order.notify_id,
            "notify_type": "trade_status_sync", "trade_status": TRADE_SUCCESS, "receipt_amount": money,
            "buyer_pay_amount": money, "app_id": channel.app_id, "sign_type": SIGN_TYPE_RSA2,
            "gmt_payment": format_alipay_time(order.paid_at), "notify_time": format_alipay_time(at),
            "version": "1.0", "out_trade_no": order.out_trade_no, "total_amount": money, "trade_no": order.trade_no,
        }
        params["sign"] = self._sign(channel, lambda key: sign_rsa2(params, key, notify=True))
        client = self.notify_client(timeout=NOTIFY_TIMEOUT_S)
        try:
            reply = await client.post(order.notify_url, data=params, headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
            return NotifyAttempt(at, reply.status_code, is_notify_ack(reply.text))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")

    def _new_trade_no(self, now: datetime) -> str:
        """28 digits: the Beijing date, then 20 digits (like ``2017032121001004070200176844``)."""
        prefix = now.astimezone(ALIPAY_TZ).strftime("%Y%m%d") + "22001"
        while True:
            trade_no = f"{prefix}{self._rng.randint(0, 10**15 - 1):015d}"
            if all(trade_no not in c.by_trade_no for c in self._channels.values()):
                return trade_no


# ---- helpers ---------------------------------------------------------------------------------------------


class _Deferred(Response):
    """A reply computed when it is sent, so a synchronous hook can still read the request body first."""

    def __init__(self, build: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self._build = build

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self._build())(scope, receive, send)


async def _params(request: Request) -> dict[str, str]:
    """The query parameters merged with a urlencoded body (the body wins), as Alipay's gateway reads them."""
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", errors="replace")
        params.update(parse_qsl(body, keep_blank_values=True))
    return params


def _lookup(channel: AlipayChannel, biz: dict[str, Any]) -> _Order:
    trade_no, out_trade_no = biz.get("trade_no"), biz.get("out_trade_no")
    if not (isinstance(trade_no, str) and trade_no) and not (isinstance(out_trade_no, str) and out_trade_no):
        raise _BizError("ACQ.INVALID_PARAMETER", "参数无效")
    order = channel.find(trade_no if isinstance(trade_no, str) else None,
                         out_trade_no if isinstance(out_trade_no, str) else None)
    if order is None:
        raise _BizError("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return order


def _query_zeroes(biz: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"buyer_pay_amount": "0.00", "invoice_amount": "0.00"}
    if isinstance(biz.get("out_trade_no"), str):
        extra["out_trade_no"] = biz["out_trade_no"]
    extra.update(point_amount="0.00", receipt_amount="0.00")
    return extra


def _corrupt(sign: str) -> str:
    """The same-length signature with its first byte flipped: well-formed, but it never verifies."""
    raw = bytearray(base64.b64decode(sign))
    raw[0] ^= 0xFF
    return base64.b64encode(bytes(raw)).decode("ascii")
