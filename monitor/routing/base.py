"""What the routing stage asks of a weight sink (YAML file, the shop's SQL table, a webhook).

A sink has a stable ``key`` (what paymon remembers about it is stored under it) and an ``apply`` that puts
weights where the shop reads them. ``apply`` answers, per channel, whether the weight is there now or why it is
*waiting* (dujiaoka's gateway is not closed while unpaid orders may still get their callback); it raises
:class:`~monitor.errors.SinkError` when the shop cannot be reached, and the stage tries again next cycle.

Some sinks can also tell what the shop uses now (``readable``): the YAML file its weights, dujiaoka's ``pays`` only
whether each gateway is open (``switch``: ``read`` gives 1 for open, 0 for closed). Others (a configured UPDATE
statement, a webhook) are write-only: the stage remembers what they confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["WeightSink"]


@runtime_checkable
class WeightSink(Protocol):
    """One place weights go. ``read`` is only called when ``readable`` is True."""

    #: A stable name for what paymon stores about this sink (kind and where it writes, never a password).
    key: str
    #: Whether :meth:`read` tells what the shop uses now.
    readable: bool
    #: Whether :meth:`read` knows only open (1) or closed (0), not the weight.
    switch: bool

    def read(self) -> dict[str, int]:
        """The weights (or open/closed flags) the shop uses now, by channel."""
        ...

    def apply(self, weights: Mapping[str, int], now: datetime) -> dict[str, str]:
        """Put ``weights`` where the shop reads them; returns {channel: why it waits} for those not applied yet."""
        ...

    def close(self) -> None:
        """Release connections (paymon is stopping)."""
        ...

