"""A tiny simulated shop that pays through epay V1 like dujiaoka's yipay flow and writes the JSONL order log.

:class:`Shop` knows its channels (protocol, base URL, credentials), creates orders (16-character
``[A-Z0-9]`` ids), opens them at the gateway over real HTTP, serves each protocol's notify route on loopback
(verifies the signature, completes the order, answers as dujiaoka does) and expires orders left unpaid. The
protocol-specific halves live in ``monitor/sim/shops/`` (one file per protocol). Every step is one line of the
JSONL order-event log. :class:`ShopTraffic` drives it: orders at a given rate, spread over channels by weight,
with simulated buyers at the gateway. Gateway faults never stop
either: they become failed or expired orders in the log, which is exactly what paymon has to notice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import Clock, SystemClock
from monitor.sim.server import AppServer, SimServer

__all__ = [
    "DEFAULT_AMOUNTS", "EventLog", "OpenFailed", "Shop", "ShopAdapter", "ShopChannel", "ShopOrder", "ShopTraffic",
    "bc_amount",
]

log = logging.getLogger(__name__)

#: Typical 发卡 prices (CNY); the smallest is what test orders use.
DEFAULT_AMOUNTS: tuple[Decimal, ...] = tuple(
    Decimal(a) for a in ("0.01", "1.00", "9.90", "10.00", "25.50", "99.00")
)
_ORDER_ID_CHARS = string.ascii_uppercase + string.digits


def bc_amount(value: object) -> Decimal | None:
    """A notify's amount as dujiaoka's ``bccomp(..., 2)`` compares it: truncated to two decimals; None when it
    is not a number."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    return number.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


class EventLog:
    """Appends order events to a JSONL file, one object per line, flushed line by line."""

    def __init__(self, path: str | Path, clock: Clock,
                 mirrors: Sequence[Callable[[str, ShopOrder, Mapping[str, object]], None]] = ()) -> None:
        self.path = Path(path)
        self._clock = clock
        self._file: IO[str] | None = None
        #: Also told about every event (e.g. a writer of dujiaoka's ``orders`` table).
        self.mirrors = list(mirrors)

    def write(self, event: str, order: ShopOrder, **fields: object) -> None:
        """Write one event for ``order``; ``ts`` is now in UTC with milliseconds; None fields are left out."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        record: dict[str, object] = {
            "ts": self._clock.now().isoformat(timespec="milliseconds"),
            "event": event,
            "order_id": order.order_id,
            "channel": order.channel,
        }
        record.update((k, v) for k, v in fields.items() if v is not None)
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        for mirror in self.mirrors:
            mirror(event, order, record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class ShopChannel:
    """How the shop reaches one channel (dujiaoka's ``pays`` row): protocol, base URL, credentials."""

    id: str
    kind: str
    endpoint: str
    credentials: Mapping[str, str]

    def __repr__(self) -> str:  # credentials stay out of logs and test output
        return f"ShopChannel(id={self.id!r}, kind={self.kind!r}, endpoint={self.endpoint!r})"


class OpenFailed(Exception):
    """Opening an order at the gateway failed; the message is a short reason (``http_error: 500``)."""


class ShopAdapter(Protocol):
    """The shop side of one protocol: open an order at the gateway, receive and acknowledge its notifies.

    One file per protocol under ``monitor/sim/shops/``, registered with one line in ``SHOP_ADAPTERS``.
    """

    kind: str
    #: Where the gateway's async notifies arrive on the shop (dujiaoka's route), and with which methods.
    notify_path: str
    notify_methods: tuple[str, ...]

    async def open(self, order: ShopOrder, channel: ShopChannel) -> str:
        """Create the order at the gateway; return the reference a buyer pays (``buyer_visits``' ``ref``)."""
        ...

    async def notify(self, request: Request) -> Response:
        """Handle one notify: verify, report it with ``Shop.callback``, answer as the shop does."""
        ...

    def credentials_of(self, gateway: Any, channel_id: str) -> dict[str, str]:
        """What the shop needs to use a simulated channel, read from the simulated gateway."""
        ...


@dataclass(slots=True)
class ShopOrder:
    """One shop order. ``status``: ``wait_pay`` → ``completed`` (verified notify) or ``expired``."""

    order_id: str
    channel: str
    method: str
    amount: Decimal
    created_at: datetime
    status: str = "wait_pay"
    trade_no: str | None = None
    payurl: str | None = None
    #: Why opening the order at the gateway failed, when it did.
    error: str | None = None


class Shop:
    """The simulated shop: its notify endpoint on loopback, its orders, and the JSONL log at ``log_path``.

    ``async with Shop(path) as shop:`` (or ``start()``/``stop()``) runs the endpoint; ``add_channel``
    registers a gateway; ``place_order`` creates and opens an order; ``expire_due`` expires orders unpaid for
    ``expire_after`` seconds (dujiaoka's default is 5 minutes).
    """

    def __init__(
        self,
        log_path: str | Path,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        expire_after: float = 300.0,
        request_timeout: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        mirrors: Sequence[Callable[[str, ShopOrder, Mapping[str, object]], None]] = (),
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self.expire_after = expire_after
        self._request_timeout = request_timeout
        self.log = EventLog(log_path, self._clock, mirrors)
        self.channels: dict[str, ShopChannel] = {}
        self.orders: dict[str, ShopOrder] = {}
        self._pending: dict[str, ShopOrder] = {}
        self._client: httpx.AsyncClient | None = None
        from monitor.sim.shops import SHOP_ADAPTERS

        self.adapters: dict[str, ShopAdapter] = {kind: cls(self) for kind, cls in SHOP_ADAPTERS.items()}
        app = Starlette(routes=[Route(a.notify_path, a.notify, methods=list(a.notify_methods))
                                for a in self.adapters.values()])
        self._server = AppServer(app, host=host, port=port)

    @property
    def log_path(self) -> Path:
        return self.log.path

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def notify_url(self) -> str:
        """The epay notify URL (dujiaoka's ``/pay/yipay/notify_url``)."""
        return self.notify_url_for("epay")

    def notify_url_for(self, kind: str) -> str:
        """Where a gateway of ``kind`` sends its notifies."""
        return self.base_url + self.adapters[kind].notify_path

    @property
    def clock(self) -> Clock:
        """The shop's clock (adapters time tokens and signatures with it)."""
        return self._clock

    @property
    def client(self) -> httpx.AsyncClient:
        """The shop's HTTP client for gateway calls (only while started)."""
        if self._client is None:
            raise RuntimeError("the shop is not started")
        return self._client

    def add_channel(self, channel_id: str, *, endpoint: str, kind: str = "epay", **credentials: object) -> ShopChannel:
        """Register a channel: its protocol, base URL (the gateway's site root) and credentials (epay: pid,
        key)."""
        if kind not in self.adapters:
            raise ValueError(f"the simulated shop cannot pay through {kind!r} channels yet")
        channel = ShopChannel(channel_id, kind, endpoint if endpoint.endswith("/") else endpoint + "/",
                              {k: str(v) for k, v in credentials.items()})
        self.channels[channel_id] = channel
        return channel

    def order(self, order_id: str) -> ShopOrder | None:
        return self.orders.get(order_id)

    async def start(self) -> None:
        await self._server.start()
        self._client = httpx.AsyncClient(timeout=self._request_timeout, trust_env=False)

    async def stop(self) -> None:
        try:
            await self._server.stop()
        finally:  # the client's connections are closed even when a request cut off at shutdown made stop fail
            if self._client is not None:
                await self._client.aclose()
                self._client = None
            self.log.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- orders ------------------------------------------------------------------------------------

    def create_order(self, channel: str, method: str, amount: Decimal | str) -> ShopOrder:
        """Create an order on ``channel`` (logs ``order_created``); it is not yet opened at the gateway."""
        if channel not in self.channels:
            raise KeyError(f"the shop has no channel {channel!r}")
        order_id = "".join(self._rng.choices(_ORDER_ID_CHARS, k=16))
        while order_id in self.orders:
            order_id = "".join(self._rng.choices(_ORDER_ID_CHARS, k=16))
        value = Decimal(amount).quantize(Decimal("0.01"))
        order = ShopOrder(order_id, channel, method, value, self._clock.now())
        self.orders[order_id] = self._pending[order_id] = order
        self.log.write("order_created", order, method=method, amount=f"{value:.2f}")
        return order

    async def open_at_gateway(self, order: ShopOrder) -> bool:
        """Create the order at its channel's gateway; on success log ``pay_redirect`` and return True.

        Timeouts, HTTP errors, malformed bodies and error codes are recorded in ``order.error``; the order then
        waits for expiry like one whose buyer never paid.
        """
        channel = self.channels[order.channel]
        try:
            ref = await self.adapters[channel.kind].open(order, channel)
        except OpenFailed as exc:
            order.error = str(exc)[:200]
            return False
        except httpx.HTTPError as exc:
            order.error = type(exc).__name__
            return False
        order.trade_no = ref
        self.log.write("pay_redirect", order, trade_no=ref)
        return True

    async def place_order(self, channel: str, method: str, amount: Decimal | str) -> ShopOrder:
        """``create_order`` then ``open_at_gateway``: what a buyer clicking "pay" causes."""
        order = self.create_order(channel, method, amount)
        await self.open_at_gateway(order)
        return order

    def expire_due(self) -> list[ShopOrder]:
        """Expire orders unpaid for ``expire_after`` seconds (logs ``order_expired``) and return them."""
        now = self._clock.now()
        due = [o for o in self._pending.values() if (now - o.created_at).total_seconds() >= self.expire_after]
        for order in due:
            order.status = "expired"
            del self._pending[order.order_id]
            self.log.write("order_expired", order)
        return due

    # ---- notify ------------------------------------------------------------------------------------

    def callback(self, order: ShopOrder, *, verified: bool, trade_no: str | None, amount: Decimal | None,
                 paid_at: str | None = None) -> str:
        """Record a notify for ``order`` and complete it when it checks out, as dujiaoka's ``completedOrder``.

        Returns ``"completed"``, ``"bad_signature"``, ``"amount_mismatch"`` or ``"already_completed"``; the
        adapter turns that into its protocol's answer. A late notify completes an expired order too.
        """
        detail = None
        if verified and amount != order.amount:
            detail = "amount mismatch"
        elif verified and order.status == "completed":
            detail = "already completed"
        self.log.write("callback_received", order, trade_no=trade_no or None, verified=verified, paid_at=paid_at,
                       detail=detail)
        if not verified:
            return "bad_signature"
        if detail is not None:
            return detail.replace(" ", "_")
        order.status, order.trade_no = "completed", trade_no
        self._pending.pop(order.order_id, None)
        self.log.write("order_paid", order, trade_no=trade_no, amount=f"{order.amount:.2f}")
        self.log.write("order_delivered", order)
        return "completed"


class ShopTraffic:
    """Shop traffic: orders arrive at ``rate_per_s`` (Poisson), each on a channel picked by weight.

    ``channels`` is a list (equal weights) or ``{channel: weight}``; ``weights`` can be changed while running.
    Channels the shop does not know yet are registered from ``gateway_server``. For every order that opens, a
    simulated buyer visits the gateway (which pays it or not per the channel's faults). Unpaid orders are
    expired as they come due. ``start()``/``stop()`` or ``async with``.
    """

    def __init__(
        self,
        shop: Shop,
        gateway_server: SimServer,
        channels: Sequence[str] | Mapping[str, float],
        *,
        rate_per_s: float = 2.0,
        rng: random.Random | None = None,
        methods: Sequence[str] = ("alipay", "wxpay"),
        amounts: Sequence[Decimal] = DEFAULT_AMOUNTS,
        expire_check_s: float = 0.5,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if not channels or not methods or not amounts:
            raise ValueError("channels, methods and amounts must not be empty")
        self.shop = shop
        self.gateway_server = gateway_server
        self.weights: dict[str, float] = (
            dict(channels) if isinstance(channels, Mapping) else {c: 1.0 for c in channels}
        )
        self.rate_per_s = rate_per_s
        self._rng = rng if rng is not None else random.Random()
        self._methods = list(methods)
        self._amounts = list(amounts)
        self._expire_check_s = expire_check_s
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        #: Orders created, opened at the gateway, and paid by their buyer.
        self.created = self.opened = self.paid = 0
        for channel in self.weights:
            if channel not in shop.channels:
                gateway = gateway_server.gateway_of(channel)
                creds = shop.adapters[gateway.kind].credentials_of(gateway, channel)
                shop.add_channel(channel, endpoint=gateway_server.endpoint(channel), kind=gateway.kind, **creds)

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("traffic already running")
        self._task = asyncio.create_task(self._run(), name="shop traffic")

    async def stop(self, drain_s: float = 2.0) -> None:
        """Stop creating orders, give the ones being opened ``drain_s`` to finish, cancel the rest. Idempotent.

        Letting in-flight orders finish keeps the log honest: an order is not left "unopened" only because the
        traffic stopped while its request was on the wire.
        """
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        inflight = list(self._inflight)
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._rng.expovariate(self.rate_per_s)
        while True:
            await asyncio.sleep(max(0.0, min(next_at - loop.time(), self._expire_check_s)))
            self.shop.expire_due()
            if loop.time() < next_at:
                continue
            next_at += self._rng.expovariate(self.rate_per_s)
            channels = [c for c, w in self.weights.items() if w > 0]
            if not channels:
                continue
            channel = self._rng.choices(channels, weights=[self.weights[c] for c in channels])[0]
            task = asyncio.create_task(
                self._one(channel, self._rng.choice(self._methods), self._rng.choice(self._amounts))
            )
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _one(self, channel: str, method: str, amount: Decimal) -> None:
        try:
            order = self.shop.create_order(channel, method, amount)
            self.created += 1
            if await self.shop.open_at_gateway(order):
                self.opened += 1
                assert order.trade_no is not None
                if self.gateway_server.gateway_of(channel).buyer_visits(channel, order.trade_no):
                    self.paid += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # one broken order must never stop the traffic
            log.exception("simulated order on %s failed", channel)
