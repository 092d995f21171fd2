"""Which simulated gateway serves a channel of a given ``kind``, and how its channels.yaml credentials map onto
the simulator's: one function per kind, registered with one line in ``ADDERS``."""

from __future__ import annotations

from collections.abc import Callable

from monitor.config import ChannelConfig
from monitor.sim.server import SimServer

__all__ = ["ADDERS", "add_channel"]


def _cred(channel: ChannelConfig, name: str) -> str:
    try:
        return channel.credentials[name].reveal()
    except KeyError:
        raise ValueError(f"channel {channel.id}: the simulator needs credentials.{name}") from None


def _epay(sim: SimServer, channel: ChannelConfig) -> None:
    sim.add_channel(channel.id, pid=_cred(channel, "pid"), key=_cred(channel, "key"))


#: channel kind -> adds that channel to a running SimServer.
ADDERS: dict[str, Callable[[SimServer, ChannelConfig], None]] = {
    "epay": _epay,
}


def add_channel(sim: SimServer, channel: ChannelConfig) -> bool:
    """Simulate ``channel``; False when no simulated gateway speaks its kind yet."""
    adder = ADDERS.get(channel.kind)
    if adder is None:
        return False
    adder(sim, channel)
    return True
