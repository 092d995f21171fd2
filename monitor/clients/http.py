"""The client of the generic ``http`` kind: one GET of a configured URL, timed.

A channel of ``kind: http`` has no gateway protocol and no credentials: the URL is ``probes.query.url``, else
the channel's ``endpoint``; a channel with neither cannot be probed (``ValueError``). What the answer must look
like is probe configuration (``expect:``), judged by :mod:`monitor.probes.http`.
"""

from __future__ import annotations

import time

from monitor.clients.base import ProbeContext, Reply, fetch
from monitor.config.channels import ChannelConfig

__all__ = ["HttpClient"]


class HttpClient:
    """GETs the URL of a channel of ``kind: http``."""

    kind = "http"

    def __init__(self, channel: ChannelConfig) -> None:
        spec = channel.probes.query
        url = (spec.url if spec is not None else None) or channel.endpoint
        if not url:
            raise ValueError(f"channel {channel.id}: kind http needs probes.query.url or endpoint")
        self.url = str(url)

    async def get(self, ctx: ProbeContext, timeout: float) -> tuple[Reply, float]:
        """The answer to one GET, and how many seconds it took."""
        t0 = time.perf_counter()
        reply = await fetch(ctx.client, "GET", self.url, timeout=timeout)
        return reply, time.perf_counter() - t0
