"""Run the simulator (or any small ASGI app) in-process with uvicorn, on loopback, inside the caller's event
loop.

:class:`AppServer` binds the socket itself (so a busy fixed port raises ``OSError`` here instead of uvicorn
calling ``sys.exit``), leaves the host process's signal handlers alone and stops cleanly. :class:`SimServer`
is the epay gateway simulator served that way: tests, the demo and the benchmarks talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from monitor.clock import Clock
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
    """The epay gateway simulator on loopback: ``async with SimServer() as sim: sim.add_channel(...)``.

    Channels can be added before or after start. ``endpoint(channel)`` is the URL a probe or shop configures
    (``http://127.0.0.1:PORT/{channel}/``, ending with ``/`` like an epay site root).
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
        self.gateway = gateway if gateway is not None else EpayGateway(rng=rng, clock=clock)
        self._server = AppServer(self.gateway.app, host=host, port=port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return self._server.base_url

    @property
    def port(self) -> int:
        return self._server.port

    def endpoint(self, channel: str) -> str:
        """A channel's epay site root, e.g. ``http://127.0.0.1:PORT/epay-main/`` (no such channel: 404)."""
        return f"{self.base_url}/{channel}/"

    def add_channel(
        self, channel_id: str, pid: int | str, key: str, faults: Faults | None = None
    ) -> EpayChannel:
        """Add a simulated merchant (see :meth:`EpayGateway.add_channel`)."""
        return self.gateway.add_channel(channel_id, pid, key, faults)

    def faults(self, channel: str) -> Faults:
        """The live fault knobs of a channel."""
        return self.gateway.faults(channel)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        """Release hung requests and pending notifies first, so shutdown never waits on them."""
        await self.gateway.aclose()
        await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
