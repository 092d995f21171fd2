"""What every simulated gateway shares: fault injection on requests, notify delivery, ground-truth records.

A gateway (one file per protocol, e.g. ``epay.py``) subclasses :class:`GatewayBase`, keeps its channels in
``self._channels`` (objects with ``id`` and ``faults``), builds a starlette ``app`` whose routes start with
``/{channel}/`` and wraps each handler with :meth:`GatewayBase.guarded`, which applies the channel's request
faults (latency, HTTP 500, hang, a non-JSON body) before the protocol code runs. Notifies go through
:meth:`GatewayBase.schedule` so :meth:`wait_notifies` and :meth:`aclose` see them, and a retrying protocol uses
:meth:`deliver` with its own schedule. :class:`monitor.sim.server.SimServer` serves several gateways at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from monitor.clock import Clock, SystemClock
from monitor.sim.faults import Faults

__all__ = ["HANG_SECONDS", "Gateway", "GatewayBase", "NotifyAttempt", "OrderTruth", "SimChannelLike"]

#: How long a hung request waits when neither the client nor the simulator gives up first.
HANG_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class NotifyAttempt:
    """One delivery of an async notify: when, its HTTP status (None: no answer), whether it was acked."""

    at: datetime
    status_code: int | None
    acknowledged: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OrderTruth:
    """What really happened to one simulated order (times are aware UTC).

    ``trade_no`` is the gateway's own id of the order, ``out_trade_no`` the merchant's (the shop's order id).
    """

    channel: str
    trade_no: str
    out_trade_no: str
    money: Decimal
    created_at: datetime
    paid: bool
    paid_at: datetime | None
    #: The buyer paid but the notify was deliberately never sent (``callback_drop_rate``).
    callback_dropped: bool
    #: At least one notify attempt was made.
    callback_sent: bool
    callback_sent_at: datetime | None
    callback_acknowledged: bool
    attempts: tuple[NotifyAttempt, ...] = ()
    #: The gateway holds the buyer's money without completing the payment (``held_rate``): ``paid`` is False.
    held: bool = False
    #: Paid, then refunded in full (``refund_rate``): ``paid`` stays True (the buyer did pay), with its pay time.
    refunded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (times ISO 8601, money a decimal string) for exports and the control API."""

        def iso(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "channel": self.channel,
            "trade_no": self.trade_no,
            "out_trade_no": self.out_trade_no,
            "money": str(self.money),
            "created_at": iso(self.created_at),
            "paid": self.paid,
            "paid_at": iso(self.paid_at),
            "callback_dropped": self.callback_dropped,
            "callback_sent": self.callback_sent,
            "callback_sent_at": iso(self.callback_sent_at),
            "callback_acknowledged": self.callback_acknowledged,
            "held": self.held,
            "refunded": self.refunded,
            "attempts": [
                {"at": iso(a.at), "status_code": a.status_code, "acknowledged": a.acknowledged, "error": a.error}
                for a in self.attempts
            ],
        }


def truth_from_attempts(
    channel: str, trade_no: str, out_trade_no: str, money: Decimal, created_at: datetime, paid: bool,
    paid_at: datetime | None, dropped: bool, attempts: Sequence[NotifyAttempt], *, held: bool = False,
    refunded: bool = False,
) -> OrderTruth:
    """Build an :class:`OrderTruth` from an order's notify attempts."""
    first = attempts[0] if attempts else None
    return OrderTruth(channel, trade_no, out_trade_no, money, created_at, paid, paid_at, dropped,
                      first is not None, first.at if first else None, any(a.acknowledged for a in attempts),
                      tuple(attempts), held, refunded)


class SimChannelLike(Protocol):
    """What the shared machinery needs of a gateway's channel record."""

    id: str
    faults: Faults


class Gateway(Protocol):
    """A simulated gateway as :class:`~monitor.sim.server.SimServer` uses it."""

    kind: str

    @property
    def app(self) -> ASGIApp: ...

    @property
    def channels(self) -> list[str]: ...

    def faults(self, channel_id: str) -> Faults: ...

    def buyer_visits(self, channel_id: str, ref: str) -> bool: ...

    def ground_truth(self) -> list[OrderTruth]: ...

    async def wait_notifies(self, timeout: float | None = None) -> bool: ...

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=SimChannelLike)
Handler = Callable[[Request, Any], Awaitable[Response]]


class GatewayBase(Generic[C]):
    """Channels, fault injection, notify bookkeeping. ``rng`` and ``clock`` make a seeded run reproducible."""

    kind = "base"
    #: What a ``bad_json`` fault answers (a WAF / CDN challenge page, as real gateways sometimes do).
    bad_body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>安全检测</title></head>'
        "<body><h1>请稍候…</h1><p>正在进行安全检测，请开启 JavaScript 后刷新页面。</p></body></html>"
    )
    bad_body_type = "text/html; charset=UTF-8"

    def __init__(self, *, rng: random.Random | None = None, clock: Clock | None = None,
                 hang_s: float = HANG_SECONDS) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._hang_s = hang_s
        self._channels: dict[str, C] = {}
        self._closing = asyncio.Event()
        self._notify_tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        #: Requests being hung right now (``hang_rate``): lets a test wait until one is, instead of guessing.
        self.hanging = 0

    # ---- channels ----------------------------------------------------------------------------------

    def channel(self, channel_id: str) -> C:
        """The channel with this id; ``KeyError`` if there is none."""
        try:
            return self._channels[channel_id]
        except KeyError:
            raise KeyError(f"no simulated channel {channel_id!r}") from None

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def faults(self, channel_id: str) -> Faults:
        """The live fault knobs of a channel (mutate them, or call ``update``)."""
        return self.channel(channel_id).faults

    # ---- requests ----------------------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A starlette endpoint: unknown channel → 404; then the channel's request faults; then ``handler``."""

        async def endpoint(request: Request) -> Response:
            channel = self._channels.get(request.path_params["channel"])
            if channel is None:
                return Response(status_code=404)
            faults = channel.faults
            delay = faults.latency(self._rng)
            if delay > 0 and await self._pause(delay):
                return Response(status_code=503)
            fault = faults.request_fault(self._rng)
            if fault == "hang":
                await self._hang(request)
                return Response(status_code=504)
            if fault == "error":
                return Response(status_code=500)
            if fault == "bad_json":
                return Response(self.bad_body, media_type=self.bad_body_type)
            if fault == "maintenance":
                return self.maintenance_reply(request, channel)
            return await handler(request, channel)

        return endpoint

    def maintenance_reply(self, request: Request, channel: C) -> Response:
        """The protocol's well-formed "under maintenance" answer; gateways override this with their own."""
        return Response("系统维护中，请稍后再试", status_code=503, media_type="text/plain; charset=utf-8")

    async def _pause(self, seconds: float) -> bool:
        """Sleep, cut short when the gateway closes; True if it was."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _hang(self, request: Request) -> None:
        """Wait until the client disconnects, the gateway closes, or ``hang_s`` passes."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        waiters = {asyncio.ensure_future(disconnected()), asyncio.ensure_future(self._closing.wait())}
        self.hanging += 1
        try:
            await asyncio.wait(waiters, timeout=self._hang_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hanging -= 1
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # ---- notifies ----------------------------------------------------------------------------------

    def notify_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """The shared HTTP client for notifies (created on first use, closed by :meth:`aclose`)."""
        if self._client is None:
            kwargs.setdefault("timeout", 5.0)
            kwargs.setdefault("follow_redirects", False)
            self._client = httpx.AsyncClient(trust_env=False, **kwargs)
        return self._client

    def schedule(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a notify coroutine in the background, tracked for :meth:`wait_notifies` and :meth:`aclose`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._notify_tasks.add(task)
        task.add_done_callback(self._notify_tasks.discard)

    async def deliver(self, send_once: Callable[[], Awaitable[NotifyAttempt]], attempts: list[NotifyAttempt],
                      delays: Sequence[float]) -> None:
        """Send, then retry after each of ``delays`` (seconds) until acknowledged; record every attempt."""
        for i in range(len(delays) + 1):
            if i and await self._pause(delays[i - 1]):
                return
            attempt = await send_once()
            attempts.append(attempt)
            if attempt.acknowledged:
                return

    @property
    def pending_notifies(self) -> int:
        """Notifies scheduled or in flight."""
        return len(self._notify_tasks)

    async def wait_notifies(self, timeout: float | None = None) -> bool:
        """Wait until no notify is scheduled or in flight; False if ``timeout`` seconds passed first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._notify_tasks:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._notify_tasks), timeout=left)
        return True

    async def aclose(self) -> None:
        """Release hung and delayed requests, cancel pending notifies, close the notify HTTP client."""
        # Waiters hold the old event; a fresh one lets the gateway be served again after a restart.
        closing, self._closing = self._closing, asyncio.Event()
        closing.set()
        while self._notify_tasks:  # a notify scheduled meanwhile (by a request finishing) is cancelled too
            tasks = list(self._notify_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
