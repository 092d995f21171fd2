"""The HTTP plumbing every gateway client shares, and the rule that every fault on the wire is a bounded outcome.

:func:`fetch` makes one exchange under a hard deadline; anything that goes wrong on the wire (refused connection,
timeout, broken stream, an endless body) becomes a :class:`ProbeFailure` carrying one of the probe outcomes
and a detail the caller redacts before it leaves. :func:`parse_json` is the lenient JSON reading real gateways
need (they send JSON as ``text/html``, with a BOM). The helpers below it are the checks every client and plugin
makes the same way: credentials present (:func:`require_credentials`), a configured timeout
(:func:`probe_timeout`), a money field (:func:`decimal_field`), the time left of a multi-call deadline
(:class:`Deadline`). :class:`GatewayClient` is what every client is built on: it checks the credentials its kind
declares, and the endpoint, once, when the channel's client is built.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol, TypeVar

import httpx

from monitor.clock import Clock
from monitor.config.channels import ChannelConfig
from monitor.models import OUTCOMES
from monitor.secret import Redactor, Secret

__all__ = [
    "MAX_BODY",
    "USER_AGENT",
    "Deadline",
    "GatewayClient",
    "ProbeContext",
    "ProbeFailure",
    "Reply",
    "base_url",
    "decimal_field",
    "endpoint_base",
    "fetch",
    "parse_json",
    "probe_timeout",
    "require_credentials",
]

#: Response bodies are read up to this many bytes; more is a ``bad_response`` (an endless body costs nothing).
MAX_BODY = 1 << 20
USER_AGENT = "paymon-probe/0.1"


class ProbeFailure(Exception):
    """A call ended with a non-``ok`` outcome; ``detail`` says what happened (redacted later)."""

    def __init__(self, outcome: str, detail: str, code: str | None = None) -> None:
        if outcome not in OUTCOMES or outcome == "ok":
            raise ValueError(f"not a failure outcome: {outcome!r}")
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.code = code

    def prefixed(self, what: str) -> ProbeFailure:
        """The same failure with ``what: `` in front of its detail (which call of several failed)."""
        return ProbeFailure(self.outcome, f"{what}: {self.detail}", code=self.code)


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status, headers, and the body (at most ``MAX_BODY`` bytes)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ProbeContext:
    """What a call needs from outside: the shared HTTP client, the clock and the redactor."""

    client: httpx.AsyncClient
    clock: Clock
    redactor: Redactor


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
    """A channel's endpoint as a base URL ending in ``/``, so clients can append the gateway's paths."""
    text = str(endpoint)
    return text if text.endswith("/") else text + "/"


def endpoint_base(channel: ChannelConfig, kind: str) -> str:
    """The channel's endpoint as a base URL (:func:`base_url`); ValueError when the channel has none."""
    if not channel.endpoint:
        raise ValueError(f"channel {channel.id}: {kind} needs an endpoint")
    return base_url(channel.endpoint)


def require_credentials(channel: ChannelConfig, kind: str, *names: str,
                        say: Literal["needed", "missing", "both"] = "needed") -> dict[str, Secret]:
    """The channel's credentials ``names``, or ValueError ``channel <id>: <kind> needs credentials …`` when one
    is absent. The message lists every needed name (``say="needed"``: ``pid and key``), only the absent ones
    (``"missing"``: ``mch_id, key``), or both (``"both"``: ``pid, private_key and platform_public_key (missing:
    pid)``); no value is ever shown."""
    creds = channel.credentials
    missing = [name for name in names if not creds.get(name)]
    if missing:
        needed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        listing = {"needed": needed, "missing": ", ".join(missing),
                   "both": f"{needed} (missing: {', '.join(missing)})"}[say]
        raise ValueError(f"channel {channel.id}: {kind} needs credentials {listing}")
    return {name: creds[name] for name in names}


_Key = TypeVar("_Key")


class GatewayClient:
    """Base of the gateway clients: a kind declares the credentials it ``needs`` (and how a missing one is named,
    ``say``, see :func:`require_credentials`); building the client for a channel checks them and the endpoint,
    raising ``ValueError`` for a channel that cannot have one."""

    kind: str = ""
    needs: tuple[str, ...] = ()
    say: Literal["needed", "missing", "both"] = "needed"

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel_id = channel.id
        #: The channel's credentials, by name (each a :class:`~monitor.secret.Secret`).
        self.credentials = require_credentials(channel, self.kind, *self.needs, say=self.say)
        #: The channel's endpoint, ending in ``/``.
        self.base = endpoint_base(channel, self.kind)

    def load_credential(self, name: str, load: Callable[[str], _Key], unreadable: str) -> _Key:
        """Credential ``name`` read by ``load`` (a PEM key, say); ValueError ``channel <id>: <unreadable>`` when
        it cannot be read (the value is never shown)."""
        try:
            return load(self.credentials[name].reveal())
        except (ValueError, TypeError):
            raise ValueError(f"channel {self.channel_id}: {unreadable}") from None


class _TimedProbe(Protocol):
    @property
    def timeout(self) -> timedelta: ...


def probe_timeout(spec: _TimedProbe | None, default: float) -> float:
    """A probe's configured timeout in seconds (``default`` when the probe is not configured)."""
    return spec.timeout.total_seconds() if spec is not None else default


def decimal_field(value: Any, what: str) -> Decimal:
    """A money field (a decimal string, or a number) as Decimal; bad_response if it is not one."""
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ProbeFailure("bad_response", f"{what} is not a number: {str(value)[:20]!r}") from None
    if not number.is_finite():
        raise ProbeFailure("bad_response", f"{what} is not a finite number")
    return number


class Deadline:
    """One deadline over several calls: each gets the time left, and none starts once it has passed."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.at = asyncio.get_running_loop().time() + timeout

    def left(self) -> float:
        """Seconds left; a ``timeout`` failure when none are."""
        left = self.at - asyncio.get_running_loop().time()
        if left <= 0:
            raise ProbeFailure("timeout", f"no complete answer within {self.timeout:g}s")
        return left
