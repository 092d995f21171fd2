"""The epay query probe over real HTTP against the simulator: every fault maps to its SPEC §2.6 outcome,
and the merchant key (sent in the URL, echoed by real servers) never appears in a result."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes import ADAPTERS, Observation, ProbeContext, run_probe
from monitor.probes.base import MAX_BODY, ProbeFailure, Reply, fetch, parse_json
from monitor.probes.epay import EpayAdapter
from monitor.secret import Redactor
from monitor.sim.server import AppServer, SimServer

KEY = "probe-test-md5-key-7f3a9c"


def channel(endpoint: str, key: str = KEY, timeout: str = "0.5s") -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "epay-main", "kind": "epay", "weight": 60, "endpoint": endpoint,
        "credentials": {"pid": "1001", "key": key}, "probes": {"query": {"every": "2s", "timeout": timeout}},
    })


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer() as server:
        server.add_channel("epay-main", pid="1001", key=KEY)
        yield server


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient() as client:
        yield ProbeContext(client, clock, Redactor([KEY]))


def test_registered_by_kind() -> None:
    assert ADAPTERS["epay"] is EpayAdapter


@pytest.mark.parametrize(
    ("faults", "key", "outcome", "code"),
    [
        ({}, KEY, "ok", "-1"),
        ({"error_rate": 1.0}, KEY, "http_error", "500"),
        ({"hang_rate": 1.0}, KEY, "timeout", None),
        ({"bad_json_rate": 1.0}, KEY, "bad_response", None),
        ({}, "wrong-key-wrong-key", "business_error", "-3"),
    ],
)
async def test_outcomes(sim: SimServer, ctx: ProbeContext, faults: dict[str, Any], key: str, outcome: str,
                        code: str | None) -> None:
    sim.faults("epay-main").update(**faults)
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"), key)), "epay-main", "query", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail
    assert result.started_at == ctx.clock.now() and result.latency_s >= 0
    assert KEY not in result.detail


async def test_slow_gateway_is_a_timeout_within_the_deadline(sim: SimServer, ctx: ProbeContext) -> None:
    sim.faults("epay-main").update(latency_s=2.0)
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"), timeout="0.3s")), "epay-main", "query",
                             ctx)
    assert result.outcome == "timeout"
    assert result.latency_s < 1.0


async def test_connection_refused(ctx: ProbeContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_probe(EpayAdapter(channel(f"http://127.0.0.1:{port}/x/")), "epay-main", "query", ctx)
    assert result.outcome == "connect_error"


async def test_found_order_and_unknown_code(ctx: ProbeContext) -> None:
    """Answers a real server could give that the simulator does not: found (code "1" as a string), odd codes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    answers = iter([
        '{"code":"1","out_trade_no":"paymon-probe-sentinel","key":"' + KEY + '"}',
        '{"code":-5,"msg":"No Act!"}',
        '{"msg":"no code"}',
        '["a list"]',
        "x" * (MAX_BODY + 10),
    ])

    async def api(request: Request) -> Response:
        assert request.query_params["act"] == "order"
        return PlainTextResponse(next(answers), media_type="text/html")

    async with AppServer(Starlette(routes=[Route("/api.php", api)])) as server:
        adapter = EpayAdapter(channel(server.base_url + "/"))
        results = [await run_probe(adapter, "epay-main", "query", ctx) for _ in range(5)]
    assert [(r.outcome, r.code) for r in results] == [
        ("ok", "1"), ("business_error", "-5"), ("bad_response", None), ("bad_response", None),
        ("bad_response", None),
    ]
    assert all(KEY not in r.detail for r in results)


async def test_a_crashing_adapter_becomes_a_result(ctx: ProbeContext, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        kind = "broken"
        supports = ("query",)

        async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
            raise RuntimeError(f"bug while using {KEY}")

    result = await run_probe(Broken(), "c1", "query", ctx)
    assert (result.outcome, result.detail) == ("bad_response", "probe error: RuntimeError")
    assert KEY not in caplog.text and "RuntimeError" in caplog.text


def test_parse_json_rules() -> None:
    assert parse_json(Reply(200, {}, b'\xef\xbb\xbf {"code": 1}')) == {"code": 1}
    for reply, outcome in [(Reply(503, {}, b""), "http_error"), (Reply(404, {}, b"{}"), "http_error"),
                           (Reply(200, {}, b"<html>"), "bad_response")]:
        with pytest.raises(ProbeFailure) as exc:
            parse_json(reply)
        assert exc.value.outcome == outcome


def test_missing_credentials_are_a_config_problem() -> None:
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "epay", "weight": 1, "endpoint": "http://127.0.0.1:1/",
                                        "credentials": {"pid": "1"}})
    with pytest.raises(ValueError, match="needs credentials pid and key"):
        EpayAdapter(cfg)


async def test_unsupported_probe_type(sim: SimServer, ctx: ProbeContext) -> None:
    result = await run_probe(EpayAdapter(channel(sim.endpoint("epay-main"))), "epay-main", "balance", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail


async def test_fetch_broken_connection(ctx: ProbeContext) -> None:
    """A server that closes the connection without answering is an http_error, not a crash."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProbeFailure) as exc:
            await fetch(ctx.client, "GET", f"http://127.0.0.1:{port}/", timeout=2)
        assert exc.value.outcome == "http_error"
    finally:
        server.close()
        await server.wait_closed()


def test_probe_failure_takes_only_failure_outcomes() -> None:
    with pytest.raises(ValueError):
        ProbeFailure("ok", "not a failure")
    with pytest.raises(ValueError):
        ProbeFailure("weird", "not an outcome")
