"""The probe contract and the shared HTTP plumbing that turns every gateway fault into a bounded outcome.

An adapter (one file per channel ``kind``) implements :class:`Adapter`: for each probe type it supports it makes
its protocol's call through :func:`fetch` and judges the answer. Anything that goes wrong on the wire becomes a
:class:`ProbeFailure` with one of the SPEC §2.6 outcomes; :func:`run_probe` turns that (and any bug in an
adapter) into a :class:`~monitor.models.ProbeResult`, so a broken or hostile gateway costs one result and never
an exception in the scheduler. Every detail is redacted before it leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from monitor.clock import Clock
from monitor.models import OUTCOMES, ProbeResult
from monitor.secret import Redactor

__all__ = [
    "MAX_BODY",
    "USER_AGENT",
    "Adapter",
    "base_url",
    "Observation",
    "ProbeContext",
    "ProbeFailure",
    "Reply",
    "fetch",
    "finish_test_order",
    "new_out_trade_no",
    "parse_json",
    "run_probe",
]

log = logging.getLogger(__name__)

#: Response bodies are read up to this many bytes; more is a ``bad_response`` (an endless body costs nothing).
MAX_BODY = 1 << 20
USER_AGENT = "paymon-probe/0.1"


class ProbeFailure(Exception):
    """A probe ended with a non-``ok`` outcome; ``detail`` says what happened (redacted later)."""

    def __init__(self, outcome: str, detail: str, code: str | None = None) -> None:
        if outcome not in OUTCOMES or outcome == "ok":
            raise ValueError(f"not a failure outcome: {outcome!r}")
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status, headers, and the body (at most ``MAX_BODY`` bytes)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Observation:
    """What a successful probe saw: the gateway's own code, a short detail, and a measured value if any."""

    code: str | None
    detail: str
    value: float | None = None


@dataclass(frozen=True)
class ProbeContext:
    """What a probe run needs from outside: the shared HTTP client, the clock and the redactor."""

    client: httpx.AsyncClient
    clock: Clock
    redactor: Redactor


class Adapter(Protocol):
    """One gateway kind. ``supports`` lists the probe types it can run; ``probe`` runs one (raising ProbeFailure)."""

    kind: str
    supports: tuple[str, ...]

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        """Run ``probe``; return what it saw on success, raise ProbeFailure otherwise."""
        ...


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    params: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One HTTP exchange under a hard deadline for the *whole* exchange (slow-loris bodies included)."""
    hdrs = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {})}

    async def exchange() -> Reply:
        async with client.stream(method, url, params=params, data=data, content=content, headers=hdrs,
                                 timeout=timeout) as resp:
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise ProbeFailure("bad_response", f"response body larger than {MAX_BODY} bytes")
            return Reply(resp.status_code, dict(resp.headers), bytes(body))

    try:
        async with asyncio.timeout(timeout):
            return await exchange()
    except TimeoutError:
        raise ProbeFailure("timeout", f"no complete answer within {timeout:g}s") from None
    except httpx.TimeoutException:
        raise ProbeFailure("timeout", f"no complete answer within {timeout:g}s") from None
    except httpx.ConnectError as exc:
        raise ProbeFailure("connect_error", f"cannot connect: {_reason(exc)}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ProbeFailure("http_error", f"connection broken: {_reason(exc)}") from None
    except httpx.HTTPError as exc:
        raise ProbeFailure("connect_error", f"{type(exc).__name__}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    # httpx messages rarely carry URLs, but the redactor runs over the detail anyway.
    return str(exc) or type(exc).__name__


def parse_json(reply: Reply) -> dict[str, Any]:
    """Decode a JSON object whatever the Content-Type says (real gateways send text/html); else bad_response."""
    if reply.status >= 500:
        raise ProbeFailure("http_error", f"HTTP {reply.status}", code=str(reply.status))
    if reply.status >= 400:
        raise ProbeFailure("http_error", f"HTTP {reply.status}", code=str(reply.status))
    text = reply.body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        snippet = " ".join(text[:80].split())
        raise ProbeFailure("bad_response", f"not JSON (HTTP {reply.status}): {snippet!r}") from None
    if not isinstance(doc, dict):
        raise ProbeFailure("bad_response", f"JSON is a {type(doc).__name__}, not an object")
    return doc


def base_url(endpoint: object) -> str:
    """A channel's endpoint as a base URL ending in ``/``, so adapters can append the gateway's paths."""
    text = str(endpoint)
    return text if text.endswith("/") else text + "/"


def new_out_trade_no(ctx: ProbeContext) -> str:
    """A fresh test-order id: ``paymon`` + the UTC time + 8 random hex digits (28 characters: within every
    gateway's limit, WeChat's 32 included, and only ``[A-Za-z0-9]`` so every gateway's pattern accepts it)."""
    return f"paymon{ctx.clock.now():%Y%m%d%H%M%S}{secrets.token_hex(4)}"


def finish_test_order(result: Observation | ProbeFailure, close: ProbeFailure | None, closed: bool) -> Observation:
    """The outcome of a test order once its close ran (or not): the check's outcome, with the close's result in
    the detail; a failed close after an ``ok`` check becomes the outcome."""
    if isinstance(result, Observation):
        if close is not None:
            raise ProbeFailure(close.outcome, f"{result.detail}; close failed: {close.detail}", code=close.code)
        return Observation(result.code, result.detail + ("; closed" if closed else ""), result.value)
    if close is not None:
        raise ProbeFailure(result.outcome, f"{result.detail}; close failed: {close.detail}", code=result.code)
    raise ProbeFailure(result.outcome, result.detail + ("; order closed" if closed else ""), code=result.code)


async def run_probe(adapter: Adapter, channel: str, probe: str, ctx: ProbeContext) -> ProbeResult:
    """Run one probe and always return a result, never raise (bugs in an adapter are logged and reported)."""
    started = ctx.clock.now()
    t0 = time.perf_counter()
    value: float | None = None
    try:
        seen = await adapter.probe(probe, ctx)
        outcome, code, detail, value = "ok", seen.code, seen.detail, seen.value
    except ProbeFailure as f:
        outcome, code, detail = f.outcome, f.code, f.detail
    except Exception as exc:  # noqa: BLE001 - one broken adapter must not stop the scheduler
        log.error("probe %s/%s crashed: %s", channel, probe, ctx.redactor(repr(exc)))
        outcome, code, detail = "bad_response", None, f"probe error: {type(exc).__name__}"
    latency = time.perf_counter() - t0
    return ProbeResult(channel, probe, outcome, latency, started, ctx.redactor(detail)[:500],
                       None if code is None else ctx.redactor(str(code))[:64], value)
