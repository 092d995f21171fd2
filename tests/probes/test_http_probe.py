"""The generic http probe, and every adapter's shared plumbing against hostile servers: slow-loris bodies,
endless bodies, HTML instead of JSON, a hung server that must not hold up another channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.base import MAX_BODY
from monitor.probes.epay import EpayAdapter
from monitor.probes.http import HttpAdapter, lookup
from monitor.secret import Redactor
from monitor.sim.server import AppServer
from tests.conftest import PATIENCE_S


async def health(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("sleep", "0")))
    status = int(request.query_params.get("status", "200"))
    return JSONResponse({"data": {"status": "ok", "items": [{"n": 1}]}, "up": True}, status_code=status)


async def html(request: Request) -> Response:
    return PlainTextResponse("<html>hello</html>", media_type="text/html")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/health", health), Route("/html", html)])
    async with AppServer(app) as server:
        yield server.base_url


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient() as client:
        yield ProbeContext(client, clock, Redactor())


def http_channel(url: str, expect: dict[str, Any] | None = None, timeout: str = "1s") -> ChannelConfig:
    query: dict[str, Any] = {"url": url, "timeout": timeout}
    if expect is not None:
        query["expect"] = expect
    return ChannelConfig.model_validate({"id": "gw", "kind": "http", "weight": 1, "probes": {"query": query}})


def test_registered() -> None:
    assert ADAPTERS["http"] is HttpAdapter


@pytest.mark.parametrize(
    ("path", "expect", "outcome", "code"),
    [
        ("/health", None, "ok", "200"),
        ("/health?status=503", None, "http_error", "503"),
        ("/health?status=404", {"status": [404]}, "ok", "404"),
        ("/health", {"status": [204]}, "http_error", "200"),
        ("/health", {"json": {"data.status": "ok", "up": True, "data.items.0.n": 1}}, "ok", "200"),
        ("/health", {"json": {"data.status": "degraded"}}, "business_error", None),
        ("/health", {"json": {"data.missing": 1}}, "business_error", None),
        ("/health", {"json": {"up": 1}}, "business_error", None),  # JSON true is not 1
        ("/html", {"json": {"up": True}}, "bad_response", None),
        ("/health?sleep=0.2", {"max_latency": "0.05s"}, "timeout", None),
        ("/health?sleep=2", None, "timeout", None),
    ],
)
async def test_http_outcomes(site: str, ctx: ProbeContext, path: str, expect: dict[str, Any] | None,
                             outcome: str, code: str | None) -> None:
    # Only the timeout cases need a short timeout (their server sleeps far longer); the others get a long one, so
    # a busy machine cannot turn their answer into a timeout.
    timeout = "0.5s" if outcome == "timeout" else "10s"
    result = await run_probe(HttpAdapter(http_channel(site + path, expect, timeout=timeout)), "gw", "query", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail


def test_lookup_and_config_errors() -> None:
    doc = {"a": [{"b": None}]}
    assert lookup(doc, "a.0.b") is None and lookup(doc, "a.1.b") is not None
    from types import SimpleNamespace

    # The config already refuses this; the adapter still says what is missing if built by hand.
    bare = SimpleNamespace(id="gw", endpoint=None, probes=SimpleNamespace(query=None))
    with pytest.raises(ValueError, match="needs probes.query.url or endpoint"):
        HttpAdapter(bare)


async def hostile_server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> Any:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


class SlowLoris:
    """Promises 100 kB, then sends a byte every 50 ms for 30 s: no read ever times out, only a total deadline
    stops the client. ``dribbled`` counts the bytes sent: on the same event loop as the client, so it measures
    how long the client listened in loop time, which a busy machine can only make smaller."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.dribbled = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.connected.set()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: application/json\r\n\r\n{")
        try:
            for _ in range(600):
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b" ")
                self.dribbled += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    try:
        while True:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def epay_at(base: str, timeout: str = "0.5s") -> EpayAdapter:
    return EpayAdapter(ChannelConfig.model_validate({
        "id": "ep", "kind": "epay", "weight": 1, "endpoint": base + "/",
        "credentials": {"pid": "1001", "key": "hostile-key-123456"},
        "probes": {"query": {"timeout": timeout}}}))


async def test_slow_loris_costs_one_timeout(ctx: ProbeContext) -> None:
    loris = SlowLoris()
    server = await hostile_server(loris)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_probe(epay_at(f"http://127.0.0.1:{port}"), "ep", "query", ctx)
        assert result.outcome == "timeout"
        # cut at the 0.5 s deadline: ~10 bytes (fewer on a busy machine); a per-read timeout would take all 600
        assert loris.dribbled < 40
    finally:
        server.close()
        await server.wait_closed()


async def test_endless_body_is_cut_at_the_cap(ctx: ProbeContext) -> None:
    server = await hostile_server(endless)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_probe(epay_at(f"http://127.0.0.1:{port}", timeout="5s"), "ep", "query", ctx)
        # bad_response, not timeout: the cap ended the read long before the 5 s deadline would have
        assert result.outcome == "bad_response" and f"larger than {MAX_BODY} bytes" in result.detail
    finally:
        server.close()
        await server.wait_closed()


async def test_html_instead_of_json(site: str, ctx: ProbeContext) -> None:
    adapter = epay_at(site)
    adapter.client.base = site + "/html?"  # the client appends api.php; any path answering HTML will do
    result = await run_probe(adapter, "ep", "query", ctx)
    assert result.outcome == "bad_response" and "not JSON" in result.detail


async def test_a_hung_gateway_does_not_hold_up_another(site: str, ctx: ProbeContext) -> None:
    loris = SlowLoris()
    server = await hostile_server(loris)
    port = server.sockets[0].getsockname()[1]
    try:
        hung = asyncio.create_task(run_probe(epay_at(f"http://127.0.0.1:{port}", "3s"), "ep", "query", ctx))
        await asyncio.wait_for(loris.connected.wait(), PATIENCE_S)  # the hung probe is on the wire
        healthy = await run_probe(HttpAdapter(http_channel(site + "/health", timeout="3s")), "gw", "query", ctx)
        # the healthy probe was answered while the hung one still hung: it did not wait behind it
        assert healthy.outcome == "ok" and not hung.done()
        assert (await hung).outcome == "timeout"
    finally:
        server.close()
        await server.wait_closed()
