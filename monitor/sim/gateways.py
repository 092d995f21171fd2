"""Which simulated gateway serves a channel of a given ``kind``, and how its channels.yaml credentials map onto
the simulator's: one function per kind, registered with one line in ``ADDERS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.config import ChannelConfig
from monitor.sim.core import Gateway
from monitor.sim.epusdt import EpusdtGateway
from monitor.sim.paypal import PayPalGateway
from monitor.sim.server import SimServer
from monitor.sim.stripe import StripeGateway
from monitor.sim.wxpay import WxpayGateway

__all__ = ["ADDERS", "add_channel"]


def _cred(channel: ChannelConfig, name: str) -> str:
    try:
        return channel.credentials[name].reveal()
    except KeyError:
        raise ValueError(f"channel {channel.id}: the simulator needs credentials.{name}") from None


def _served(sim: SimServer, cls: Callable[[], Gateway]) -> Any:
    """The simulator's gateway of that class, added on first use."""
    kind = cls.kind  # type: ignore[attr-defined]
    if kind not in sim.gateways:
        sim.add_gateway(cls())
    return sim.gateways[kind]


def _claimed(sim: SimServer, channel: ChannelConfig, gateway: Any) -> None:
    sim.register(channel.id, gateway)


def _epay(sim: SimServer, channel: ChannelConfig) -> None:
    sim.add_channel(channel.id, pid=_cred(channel, "pid"), key=_cred(channel, "key"))


def _wxpay_v2(sim: SimServer, channel: ChannelConfig) -> None:
    gw = _served(sim, WxpayGateway)
    gw.add_channel(channel.id, appid=_cred(channel, "appid"), mch_id=_cred(channel, "mch_id"),
                   key=_cred(channel, "key"))
    _claimed(sim, channel, gw)


def _epusdt(sim: SimServer, channel: ChannelConfig) -> None:
    gw = _served(sim, EpusdtGateway)
    gw.add_channel(channel.id, token=_cred(channel, "token"))
    _claimed(sim, channel, gw)


def _stripe(sim: SimServer, channel: ChannelConfig) -> None:
    gw = _served(sim, StripeGateway)
    # A local setup wants the shop to hear about payments: give the channel a webhook secret unless it has one.
    secret = channel.credentials["webhook_secret"].reveal() if "webhook_secret" in channel.credentials else None
    gw.add_channel(channel.id, api_key=_cred(channel, "secret_key"), webhook_secret=secret or f"whsec_sim_{channel.id}")
    _claimed(sim, channel, gw)


def _paypal(sim: SimServer, channel: ChannelConfig) -> None:
    gw = _served(sim, PayPalGateway)
    gw.add_channel(channel.id, client_id=_cred(channel, "client_id"), client_secret=_cred(channel, "client_secret"))
    _claimed(sim, channel, gw)


#: channel kind -> adds that channel to a running SimServer.
ADDERS: dict[str, Callable[[SimServer, ChannelConfig], None]] = {
    "epay": _epay,
    "wxpay_v2": _wxpay_v2,
    "epusdt": _epusdt,
    "stripe": _stripe,
    "paypal": _paypal,
}


def add_channel(sim: SimServer, channel: ChannelConfig) -> bool:
    """Simulate ``channel``; False when no simulated gateway speaks its kind yet."""
    adder = ADDERS.get(channel.kind)
    if adder is None:
        return False
    adder(sim, channel)
    return True
