"""A simulated epusdt gateway (kind ``epusdt``): USDT-TRC20 orders, status checks and JSON callbacks.

Each channel is one epusdt server (its ``api_auth_token``) under its own path prefix, serving the real paths
``/{channel}/api/v1/order/create-transaction``, ``/{channel}/pay/check-status/{trade_id}`` and the cashier page
``/{channel}/pay/checkout-counter/{trade_id}``, so a client whose base URL is ``http://127.0.0.1:PORT/{channel}/``
speaks the protocol unchanged (read from ``assimon/epusdt``). Like the Go server,
every reply is HTTP 200 with a ``status_code`` inside: the signature is checked before the body is bound (so a
broken body is a 401), a type mismatch is 10009, a failed validation 400 with the validator's message (gookit
zh-CN wording), a reused ``order_id`` 10002. The USDT amount is the CNY amount at a fixed rate, rounded to 4
decimals and bumped by 0.0001 while another waiting order holds the same (wallet, amount) pair; unpaid orders
expire after ``order_expiration_s``.

Simulated buyers (:meth:`EpusdtGateway.buyer_visits`) pay with the channel's pay probability; the signed callback
carries the ``powered-by`` header and counts only when the reply body is exactly ``ok``. epusdt's default is a
single attempt (``notify_max_retry=0``, as its ``.env.example``).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock
from monitor.protocols.epusdt import (
    ACK_BODY,
    CODE_AMOUNT_ERROR,
    CODE_DUPLICATE_ORDER,
    CODE_NO_AMOUNT_CHANNEL,
    CODE_OK,
    CODE_ORDER_NOT_FOUND,
    CODE_PARAMS_ERROR,
    CODE_SIGNATURE_ERROR,
    CODE_SYSTEM_ERROR,
    DEFAULT_RATE,
    ERRNO,
    POWERED_BY,
    STATUS_EXPIRED,
    STATUS_PAID,
    STATUS_WAIT_PAY,
    asynq_retry_delay,
    go_json,
    sign,
    usdt_amount,
    verify,
)
from monitor.sim.core import HANG_SECONDS, GatewayBase, NotifyAttempt, OrderTruth, truth_from_attempts
from monitor.sim.faults import Faults, roll

__all__ = ["PROBE_ORDER_PREFIX", "EpusdtChannel", "EpusdtGateway"]

#: The ``order_id`` prefix of the orders paymon's probes create (``monitor.probes.epusdt``).
PROBE_ORDER_PREFIX = "paymon-probe-"

_JSON_TYPE = "application/json; charset=UTF-8"
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_STEP = Decimal("0.0001")
_BEIJING_OFFSET = timedelta(hours=8)


@dataclass(slots=True)
class _Order:
    """One row of epusdt's ``orders`` table plus the simulator's notify bookkeeping."""

    trade_id: str
    order_id: str
    amount: float  # CNY as the request's float64
    actual_amount: Decimal  # USDT, 4 decimals
    token: str  # the receiving wallet address
    notify_url: str
    redirect_url: str
    created_at: datetime
    expires_at: datetime
    status: int = STATUS_WAIT_PAY
    block_transaction_id: str = ""
    paid_at: datetime | None = None
    callback_dropped: bool = False
    attempts: list[NotifyAttempt] = field(default_factory=list)


@dataclass(slots=True)
class EpusdtChannel:
    """One simulated epusdt server: its API token (never in ``repr``), wallet, fault knobs and orders."""

    id: str
    token: str = field(repr=False)
    wallet: str
    faults: Faults
    orders: dict[str, _Order] = field(default_factory=dict)  # trade_id -> order
    by_order_id: dict[str, str] = field(default_factory=dict)


class EpusdtGateway(GatewayBase[EpusdtChannel]):
    """The simulated epusdt gateway; add channels, serve :attr:`app` (e.g. with ``SimServer.add_gateway``).

    Options: ``usdt_rate`` (CNY per USDT, default 6.4), ``order_expiration_s`` (default 600), ``notify_max_retry``
    (retries after the first callback, default 0) and ``notify_retry_delays`` (the waits before each retry in
    seconds, the last one repeated; default asynq's ``n**4 + 15``), ``notify_timeout_s``, and ``app_uri`` (the
    base of ``payment_url``; default the channel's own URL on this server).
    """

    kind = "epusdt"

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        hang_s: float = HANG_SECONDS,
        usdt_rate: Decimal | str = DEFAULT_RATE,
        order_expiration_s: float = 600.0,
        notify_max_retry: int = 0,
        notify_retry_delays: Sequence[float] | None = None,
        notify_timeout_s: float = 5.0,
        app_uri: str | None = None,
    ) -> None:
        super().__init__(rng=rng, clock=clock, hang_s=hang_s)
        rate = Decimal(usdt_rate)
        if not rate.is_finite() or rate <= 0:
            raise ValueError(f"usdt_rate must be a positive number, got {usdt_rate!r}")
        if notify_max_retry < 0 or order_expiration_s <= 0:
            raise ValueError("notify_max_retry must be >= 0 and order_expiration_s > 0")
        if notify_retry_delays is not None and (not notify_retry_delays or any(d < 0 for d in notify_retry_delays)):
            raise ValueError("notify_retry_delays must be non-empty and >= 0 seconds")
        self.usdt_rate = rate
        self.order_expiration = timedelta(seconds=order_expiration_s)
        self.notify_timeout_s = notify_timeout_s
        self.app_uri = app_uri.rstrip("/") if app_uri else None
        delays = tuple(notify_retry_delays) if notify_retry_delays is not None else None
        self.notify_retry_delays: tuple[float, ...] = tuple(
            (delays[min(i, len(delays) - 1)] if delays else asynq_retry_delay(i)) for i in range(notify_max_retry)
        )
        self.app = Starlette(routes=[
            Route("/{channel}/api/v1/order/create-transaction", self.guarded(self._create), methods=["POST"]),
            Route("/{channel}/pay/check-status/{trade_id}", self.guarded(self._check_status), methods=["GET"]),
            Route("/{channel}/pay/checkout-counter/{trade_id}", self.guarded(self._checkout), methods=["GET"]),
        ])

    # ---- channels, buyers, ground truth ------------------------------------------------------------

    def add_channel(self, channel_id: str, *, token: str, faults: Faults | None = None) -> EpusdtChannel:
        """Add an epusdt server served under ``/{channel_id}/`` with its ``api_auth_token``; ``ValueError`` for a
        bad or duplicate id or an empty token. The channel's wallet address is drawn from the gateway's rng."""
        if not _CHANNEL_ID.match(channel_id):
            raise ValueError(f"channel id must match {_CHANNEL_ID.pattern}: {channel_id!r}")
        if channel_id in self._channels:
            raise ValueError(f"channel {channel_id!r} already exists")
        if not token:
            raise ValueError("the api token must not be empty")
        wallet = "T" + "".join(self._rng.choice(_BASE58) for _ in range(33))
        channel = EpusdtChannel(channel_id, token, wallet, faults if faults is not None else Faults())
        self._channels[channel_id] = channel
        return channel

    def buyer_visits(self, channel_id: str, ref: str) -> bool:
        """A buyer sends USDT for the order ``ref`` (its ``trade_id`` or ``order_id``). Returns True if they paid.

        With the channel's ``pay_probability`` a waiting order becomes paid (status 2, a block transaction id) and,
        unless dropped with ``callback_drop_rate``, its callback goes out after the callback delay (twice with
        ``duplicate_callback_rate``). Paid or expired orders are left alone (False); an unknown one is a
        ``KeyError``. Call it from the event loop that serves :attr:`app`.
        """
        channel = self.channel(channel_id)
        order = channel.orders.get(ref) or channel.orders.get(channel.by_order_id.get(ref, ""))
        if order is None:
            raise KeyError(f"no order {ref!r} on channel {channel_id!r}")
        faults = channel.faults
        if self._status(order) != STATUS_WAIT_PAY or not roll(faults.pay_probability, self._rng):
            return False
        order.status, order.paid_at = STATUS_PAID, self._clock.now()
        order.block_transaction_id = "".join(self._rng.choice("0123456789abcdef") for _ in range(64))
        if roll(faults.callback_drop_rate, self._rng):
            order.callback_dropped = True
            return True
        copies = 2 if roll(faults.duplicate_callback_rate, self._rng) else 1
        self.schedule(self._notify(channel, order, faults.callback_delay(self._rng), copies))
        return True

    def probe_orders(self, channel_id: str) -> int:
        """How many orders paymon's probes created on the channel (their ``order_id`` starts with
        :data:`PROBE_ORDER_PREFIX`): what the probes cost the operator in waiting orders."""
        return sum(1 for o in self.channel(channel_id).orders.values() if o.order_id.startswith(PROBE_ORDER_PREFIX))

    def ground_truth(self) -> list[OrderTruth]:
        """Every order of every channel as it really stands (``trade_no`` = ``trade_id``, money in CNY)."""
        return [
            truth_from_attempts(channel.id, o.trade_id, o.order_id, Decimal(repr(o.amount)), o.created_at,
                                o.status == STATUS_PAID, o.paid_at, o.callback_dropped, o.attempts)
            for channel in self._channels.values()
            for o in channel.orders.values()
        ]

    def _status(self, order: _Order) -> int:
        """The order's status now: a waiting order past its expiration becomes 3 (epusdt's expiration job)."""
        if order.status == STATUS_WAIT_PAY and self._clock.now() >= order.expires_at:
            order.status = STATUS_EXPIRED
        return order.status

    # ---- replies -----------------------------------------------------------------------------------

    def _reply(self, request: Request, status_code: int, data: object = None, message: str | None = None) -> Response:
        """echo's ``c.JSON(200, Response{...})``: Go's JSON with a trailing newline, HTTP 200 always."""
        if message is None:
            message = "success" if status_code == CODE_OK else ERRNO[status_code]
        request_id = request.headers.get("x-request-id") or str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        body = {"status_code": status_code, "message": message, "data": data, "request_id": request_id}
        return Response(go_json(body) + "\n", media_type=_JSON_TYPE)

    def maintenance_reply(self, request: Request, channel: EpusdtChannel) -> Response:
        """epusdt's generic failure: ``status_code`` 400 系统错误."""
        return self._reply(request, CODE_SYSTEM_ERROR)

    # ---- HTTP --------------------------------------------------------------------------------------

    async def _create(self, request: Request, channel: EpusdtChannel) -> Response:
        """``POST api/v1/order/create-transaction``: signature, bind, validate, then create."""
        try:
            params = json.loads(await request.body())
        except ValueError:
            params = {}
        if not isinstance(params, dict) or not verify(params, channel.token):
            return self._reply(request, CODE_SIGNATURE_ERROR)
        order_id, amount, notify_url = params.get("order_id"), params.get("amount"), params.get("notify_url")
        redirect_url = params.get("redirect_url")
        if (
            not isinstance(order_id, str | None)
            or not isinstance(notify_url, str | None)
            or not isinstance(redirect_url, str | None)
            or isinstance(amount, bool)
            or not isinstance(amount, int | float | None)
        ):
            return self._reply(request, CODE_PARAMS_ERROR)  # Go's Bind fails on a type mismatch
        problem = _invalid(order_id or "", float(amount or 0), notify_url or "")
        if problem:
            return self._reply(request, CODE_SYSTEM_ERROR, message=problem)
        assert order_id and amount and notify_url
        actual = usdt_amount(float(amount), self.usdt_rate)
        if actual <= 0:
            return self._reply(request, CODE_AMOUNT_ERROR)
        if order_id in channel.by_order_id:
            return self._reply(request, CODE_DUPLICATE_ORDER)
        now = self._clock.now()
        held = {o.actual_amount for o in channel.orders.values() if self._status(o) == STATUS_WAIT_PAY}
        for _ in range(100):
            if actual not in held:
                break
            actual += _STEP
        else:
            return self._reply(request, CODE_NO_AMOUNT_CHANNEL)
        order = _Order(
            trade_id=self._new_trade_id(now),
            order_id=order_id,
            amount=float(amount),
            actual_amount=actual,
            token=channel.wallet,
            notify_url=notify_url,
            redirect_url=redirect_url or "",
            created_at=now,
            expires_at=now + self.order_expiration,
        )
        channel.orders[order.trade_id] = order
        channel.by_order_id[order_id] = order.trade_id
        base = self.app_uri or f"{request.url.scheme}://{request.headers.get('host', '127.0.0.1')}/{channel.id}"
        return self._reply(request, CODE_OK, {
            "trade_id": order.trade_id,
            "order_id": order.order_id,
            "amount": order.amount,
            "actual_amount": float(order.actual_amount),
            "token": order.token,
            "expiration_time": int(order.expires_at.timestamp()),
            "payment_url": f"{base}/pay/checkout-counter/{order.trade_id}",
        })

    async def _check_status(self, request: Request, channel: EpusdtChannel) -> Response:
        """``GET pay/check-status/{trade_id}`` → ``{trade_id, status}`` or 10008."""
        order = channel.orders.get(request.path_params["trade_id"])
        if order is None:
            return self._reply(request, CODE_ORDER_NOT_FOUND)
        return self._reply(request, CODE_OK, {"trade_id": order.trade_id, "status": self._status(order)})

    async def _checkout(self, request: Request, channel: EpusdtChannel) -> Response:
        """The cashier page: the amount and address to pay, or the error text (HTTP 200 either way)."""
        order = channel.orders.get(request.path_params["trade_id"])
        if order is None:
            return Response(ERRNO[CODE_ORDER_NOT_FOUND], media_type="text/plain; charset=UTF-8")
        html = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>收银台</title></head><body>'
            f"<p>请支付 <b>{order.actual_amount:.4f}</b> USDT (TRC20)</p><p>{order.token}</p>"
            f"<p>{order.trade_id}</p></body></html>"
        )
        return Response(html, media_type="text/html; charset=UTF-8")

    # ---- callback ----------------------------------------------------------------------------------

    def callback_body(self, channel: EpusdtChannel, order: _Order) -> str:
        """The callback JSON (``OrderNotifyResponse`` field order), signed with the token; the signature is
        corrupted when the bad-signature fault fires."""
        fields: dict[str, object] = {
            "trade_id": order.trade_id,
            "order_id": order.order_id,
            "amount": order.amount,
            "actual_amount": float(order.actual_amount),
            "token": order.token,
            "block_transaction_id": order.block_transaction_id,
            "signature": "",
            "status": STATUS_PAID,
        }
        signature = sign(fields, channel.token)
        if channel.faults.bad_signature(self._rng):
            signature = signature[::-1] if signature[::-1] != signature else "0" * len(signature)
        fields["signature"] = signature
        return go_json(fields)

    async def _notify(self, channel: EpusdtChannel, order: _Order, delay_s: float, copies: int) -> None:
        """After ``delay_s``, deliver the callback (with ``notify_max_retry`` retries) ``copies`` times."""
        if delay_s > 0 and await self._pause(delay_s):
            return
        body = self.callback_body(channel, order).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "go-resty/2.7.0 (https://github.com/go-resty/resty)",
            "powered-by": POWERED_BY,
        }
        client = self.notify_client()

        async def send_once() -> NotifyAttempt:
            at = self._clock.now()
            try:
                reply = await client.post(order.notify_url, content=body, headers=headers,
                                          timeout=self.notify_timeout_s)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return NotifyAttempt(at, None, False, f"{type(exc).__name__}: {exc}")
            return NotifyAttempt(at, reply.status_code, reply.text == ACK_BODY)

        for _ in range(copies):
            await self.deliver(send_once, order.attempts, self.notify_retry_delays)

    def _new_trade_id(self, now: datetime) -> str:
        """``GenerateCode``: date ``YYYYMMDD`` (Beijing) + unix milliseconds + 3 random digits, unique."""
        day = (now + _BEIJING_OFFSET).strftime("%Y%m%d")
        millis = int(now.timestamp() * 1000)
        while True:
            trade_id = f"{day}{millis}{self._rng.randrange(1000):03d}"
            if all(trade_id not in c.orders for c in self._channels.values()):
                return trade_id


def _invalid(order_id: str, amount: float, notify_url: str) -> str | None:
    """gookit/validate's first failure for ``CreateTransactionRequest`` (zh-CN messages), or None."""
    if not order_id:
        return "订单号 是必填项"
    if len(order_id) > 32:
        return "订单号 的最大长度是 32"
    if amount == 0:
        return "支付金额 是必填项"
    if not amount > 0.01:
        return "支付金额 value should be greater than 0.01"
    if not notify_url:
        return "异步回调网址 是必填项"
    parts = urlsplit(notify_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "异步回调网址 值必须是一个完整、有效的URL地址"
    return None
