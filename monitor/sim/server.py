"""Run the simulator (or any small ASGI app) in-process with uvicorn, on loopback, inside the caller's event
loop.

:class:`AppServer` binds the socket itself (so a busy fixed port raises ``OSError`` here instead of uvicorn
calling ``sys.exit``), leaves the host process's signal handlers alone and stops cleanly. :class:`SimServer`
serves every simulated gateway that way on one port: tests, the demo and the benchmarks talk to it over
real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.clock import Clock
from monitor.sim.core import Gateway, OrderTruth
from monitor.sim.epay import EpayChannel, EpayGateway
from monitor.sim.faults import Faults

__all__ = ["AppServer", "SimServer"]


class _InProcessServer(uvicorn.Server):
    """uvicorn without its signal handling (the embedding program decides when to stop), with a prompt exit.

    uvicorn polls ``should_exit`` every 0.1 s; :meth:`request_exit` wakes the loop at once instead, which
    keeps the many short-lived servers of the test suite fast to stop.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True
        self._wake.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown with its fixed 0.1 s pauses replaced by a short poll: stopping an idle server
        takes milliseconds (the suite starts and stops hundreds), a busy one still gets the graceful timeout;
        after it, nothing is left open: requests are cancelled and their connections closed."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        limit = self.config.timeout_graceful_shutdown
        deadline = None if limit is None else loop.time() + limit
        while (self.server_state.connections or self.server_state.tasks) and (
            deadline is None or loop.time() < deadline
        ):
            await asyncio.sleep(0.005)
        tasks = list(self.server_state.tasks)
        for task in tasks:
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        await asyncio.gather(*tasks, return_exceptions=True)
        # uvicorn leaves the connection of a request cancelled here open, and its socket would then be closed by the
        # garbage collector (a ResourceWarning) in whatever runs later. Close every connection still open.
        for connection in list(self.server_state.connections):
            connection.transport.close()
        for server in self.servers:
            await server.wait_closed()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # on_tick refreshes the Date header and reads should_exit
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)


class AppServer:
    """Serves ``app`` on ``host:port`` (port 0 = any free port) from a task of the running event loop.

    Use ``async with AppServer(app) as srv:`` or ``await srv.start()`` / ``await srv.stop()``. Requests still
    running at stop get ``graceful_timeout_s`` to finish, then are cancelled.
    """

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, graceful_timeout_s: int = 2
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._graceful_timeout_s = graceful_timeout_s
        self._server: _InProcessServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._socket is None:
            raise RuntimeError("server not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, no trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once uvicorn accepts connections."""
        if self._task is not None:
            raise RuntimeError("server already started")
        family, kind, proto, _, _ = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0]
        # The proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP, and
        # without it every response waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=sock.getsockname()[1],
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=self._graceful_timeout_s,
        )
        server = _InProcessServer(config)
        self._socket, self._server = sock, server
        self._task = asyncio.create_task(
            server.serve(sockets=[sock]), name=f"uvicorn {self._host}:{self.port}"
        )
        while not server.started:
            if self._task.done():
                self._socket, self._server, task, self._task = None, None, self._task, None
                sock.close()
                task.result()  # re-raises what stopped uvicorn
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (or cancel them), close the socket. Idempotent."""
        server, task, sock = self._server, self._task, self._socket
        if server is None or task is None:
            return
        server.request_exit()
        try:
            await task
        finally:
            self._server, self._task = None, None
            if sock is not None:
                sock.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class SimServer:
    """Simulated gateways on loopback: ``async with SimServer() as sim: sim.add_channel(...)``.

    Every channel is served under its own path prefix, ``endpoint(channel)`` (``http://127.0.0.1:PORT/{id}/``),
    by the gateway of its protocol; several protocols share one port. Channels can be added before or after
    start. A small control API under ``/_sim/`` changes fault knobs and exports the ground truth over HTTP:

    - ``GET /_sim/channels``: every channel with its kind and fault knobs (and, on epusdt, ``probe_orders``: how
      many orders paymon's probes created there);
    - ``POST /_sim/channels/{id}/faults`` with a JSON object of knobs: change them (400 on a bad knob);
    - ``GET /_sim/truth[?channel=ID]``: what really happened to every order.
    """

    def __init__(
        self,
        gateway: EpayGateway | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if gateway is not None and (rng is not None or clock is not None):
            raise ValueError("pass rng/clock to the EpayGateway you supply, not to SimServer")
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self.gateway = gateway if gateway is not None else EpayGateway(rng=self._rng, clock=clock)
        self.gateways: dict[str, Gateway] = {"epay": self.gateway}
        self._owner: dict[str, Gateway] = {}
        app = Starlette(routes=[
            Route("/_sim/channels", self._list_channels, methods=["GET"]),
            Route("/_sim/channels/{channel}/faults", self._faults, methods=["GET", "POST", "PATCH"]),
            Route("/_sim/truth", self._truth, methods=["GET"]),
            Mount("/", app=self._dispatch),
        ])
        self._server = AppServer(app, host=host, port=port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return self._server.base_url

    @property
    def port(self) -> int:
        return self._server.port

    def endpoint(self, channel: str) -> str:
        """A channel's base URL, e.g. ``http://127.0.0.1:PORT/epay-main/`` (no such channel: 404)."""
        return f"{self.base_url}/{channel}/"

    def add_channel(
        self, channel_id: str, pid: int | str, key: str, faults: Faults | None = None
    ) -> EpayChannel:
        """Add a simulated epay V1 merchant (see :meth:`EpayGateway.add_channel`)."""
        self._claim(channel_id)
        channel = self.gateway.add_channel(channel_id, pid, key, faults)
        self._owner[channel_id] = self.gateway
        return channel

    def add_gateway(self, gateway: Gateway) -> Gateway:
        """Serve another protocol's gateway (one per ``kind``); its channels are found by id."""
        if gateway.kind in self.gateways:
            raise ValueError(f"a {gateway.kind} gateway is already served")
        self.gateways[gateway.kind] = gateway
        for channel_id in gateway.channels:
            self._claim(channel_id)
            self._owner[channel_id] = gateway
        return gateway

    def register(self, channel_id: str, gateway: Gateway) -> None:
        """Route ``/{channel_id}/`` to ``gateway`` (for channels added to a gateway after ``add_gateway``)."""
        if self.gateways.get(gateway.kind) is not gateway:
            self.add_gateway(gateway)
        if self._owner.get(channel_id) is not gateway:
            self._claim(channel_id)
            self._owner[channel_id] = gateway

    def _claim(self, channel_id: str) -> None:
        if channel_id in self._owner or channel_id.startswith("_"):
            raise ValueError(f"channel id {channel_id!r} is taken or reserved")

    def gateway_of(self, channel: str) -> Gateway:
        """The gateway serving a channel; ``KeyError`` if none does. Runs on every request: the owner map answers
        first, and only a channel added to a gateway behind the server's back costs a scan (once)."""
        known = self._owner.get(channel)
        if known is not None:
            return known
        for gw in self.gateways.values():
            if channel in gw.channels:
                self._owner.setdefault(channel, gw)
                return gw
        raise KeyError(f"no simulated channel {channel!r}")

    def faults(self, channel: str) -> Faults:
        """The live fault knobs of a channel."""
        return self.gateway_of(channel).faults(channel)

    def ground_truth(self) -> list[OrderTruth]:
        """What really happened to every order on every gateway."""
        return [t for gw in self.gateways.values() for t in gw.ground_truth()]

    async def wait_notifies(self, timeout: float | None = None) -> bool:
        """Wait for every gateway's pending notifies (False if ``timeout`` passed first)."""
        results = [await gw.wait_notifies(timeout) for gw in self.gateways.values()]
        return all(results)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        """Release hung requests and pending notifies first, so shutdown never waits on them; then once more
        after the server stopped: a request still running during the graceful shutdown (a slow one, on a busy
        machine) can schedule a notify, whose task and fresh notify client would otherwise outlive the
        simulator (a transport left open, never closed)."""
        for gw in self.gateways.values():
            await gw.aclose()
        try:
            await self._server.stop()
        finally:
            for gw in self.gateways.values():
                await gw.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- HTTP ----------------------------------------------------------------------------------------

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request, untouched, to the gateway that owns the path's first segment."""
        path = scope.get("path", "")
        channel = path.lstrip("/").split("/", 1)[0]
        try:
            gw = self.gateway_of(channel)
        except KeyError:
            await Response(status_code=404)(scope, receive, send)
            return
        await gw.app(scope, receive, send)

    async def _list_channels(self, request: Request) -> Response:
        return JSONResponse([
            {"id": ch, "kind": gw.kind, "faults": dataclasses.asdict(gw.faults(ch)), **_probe_orders(gw, ch)}
            for gw in self.gateways.values() for ch in gw.channels
        ])

    async def _faults(self, request: Request) -> Response:
        channel = request.path_params["channel"]
        try:
            faults = self.faults(channel)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0])}, status_code=404)
        if request.method != "GET":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of fault knobs")
                faults.update(**changes)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(dataclasses.asdict(faults))

    async def _truth(self, request: Request) -> Response:
        channel = request.query_params.get("channel")
        rows = [t.as_dict() for t in self.ground_truth() if channel is None or t.channel == channel]
        return JSONResponse(rows)


def _probe_orders(gateway: Gateway, channel: str) -> dict[str, int]:
    """``{"probe_orders": n}`` for a gateway that counts the orders paymon's probes created on a channel (epusdt),
    else nothing."""
    count = getattr(gateway, "probe_orders", None)
    return {"probe_orders": int(count(channel))} if callable(count) else {}
