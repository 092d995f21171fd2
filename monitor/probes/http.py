"""The generic ``http`` probe, for gateways paymon has no adapter for: GET a URL and judge the answer.

``query`` sends GET to ``probes.query.url`` (or the channel's ``endpoint``). Without an ``expect:`` block any 2xx
answer is ``ok``. With one: the status must be one of ``expect.status`` (else ``http_error``); every dotted path in
``expect.json`` must hold exactly the given value in the JSON body (a body that is not JSON is ``bad_response``, a
missing or different value ``business_error`` — the endpoint answered, and says it is not healthy); an answer
slower than ``expect.max_latency`` is a ``timeout`` even though it arrived.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.clients.http import HttpClient
from monitor.probes.base import Observation, ProbeAdapter, ProbeContext, ProbeFailure, handles, probe_timeout

__all__ = ["HttpAdapter", "lookup"]

_MISSING = object()


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path (``data.items.0.status``); list items by index. ``_MISSING`` if absent."""
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _same(actual: Any, wanted: Any) -> bool:
    # JSON true is not 1, and "1" is not 1: compare type and value (ints and floats compare as numbers).
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return type(actual) is type(wanted) and actual == wanted
    if isinstance(wanted, int | float) and isinstance(actual, int | float):
        return float(actual) == float(wanted)
    return type(actual) is type(wanted) and actual == wanted


class HttpAdapter(ProbeAdapter[HttpClient]):
    """Probes for a channel of ``kind: http``."""

    kind = "http"
    client_class = HttpClient

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.query
        timeout = probe_timeout(spec, 5.0)
        expect = spec.expect if spec is not None else None
        reply, took = await self.client.get(ctx, timeout)
        wanted_status = expect.status if expect is not None and expect.status else None
        if (wanted_status is not None and reply.status not in wanted_status) or (
            wanted_status is None and not 200 <= reply.status < 300
        ):
            raise ProbeFailure("http_error", f"HTTP {reply.status}", code=str(reply.status))
        if expect is not None and expect.json_:
            try:
                doc = json.loads(reply.body.decode("utf-8", errors="replace"))
            except ValueError:
                raise ProbeFailure("bad_response", f"HTTP {reply.status}, body is not JSON") from None
            for path, wanted in expect.json_.items():
                actual = lookup(doc, path)
                if actual is _MISSING:
                    raise ProbeFailure("business_error", f"{path} is missing (expected {wanted!r})")
                if not _same(actual, wanted):
                    raise ProbeFailure("business_error", f"{path} = {str(actual)[:60]!r}, expected {wanted!r}")
        limit = expect.max_latency.total_seconds() if expect is not None and expect.max_latency else None
        if limit is not None and took > limit:
            raise ProbeFailure("timeout", f"answered in {took:.3f}s, slower than {limit:g}s")
        return Observation(str(reply.status), f"HTTP {reply.status} in {took * 1000:.0f} ms")
