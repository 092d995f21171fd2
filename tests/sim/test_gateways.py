"""`paymon sim` builds a simulated channel for every kind it knows, from channels.yaml credentials."""

from __future__ import annotations

import httpx
import pytest

from monitor.config import ChannelConfig
from monitor.sim.gateways import ADDERS, add_channel
from monitor.sim.server import SimServer

CHANNELS = {
    "epay": ({"pid": "1001", "key": "k" * 16}, "api.php?act=query&pid=1001&key=" + "k" * 16, 200),
    "wxpay_v2": ({"appid": "wx1234567890", "mch_id": "10000100", "key": "w" * 32}, "pay/orderquery", 200),
    "epusdt": ({"token": "t" * 16}, "pay/check-status/none", 200),
    "stripe": ({"secret_key": "sk_test_" + "s" * 24}, "v1/payment_intents/pi_none", 401),
    "paypal": ({"client_id": "client-1", "client_secret": "secret-123456"}, "v2/checkout/orders/none", 401),
}


def channel(kind: str, creds: dict[str, str]) -> ChannelConfig:
    return ChannelConfig.model_validate({"id": f"c-{kind.replace('_', '-')}", "kind": kind, "weight": 1,
                                         "endpoint": "http://127.0.0.1:8950/x/", "credentials": creds})


async def test_every_supported_kind_is_served_on_its_own_path() -> None:
    assert set(ADDERS) == set(CHANNELS)
    async with SimServer() as sim, httpx.AsyncClient() as client:
        for kind, (creds, _, _) in CHANNELS.items():
            assert add_channel(sim, channel(kind, creds))
        for kind, (_, path, status) in CHANNELS.items():
            cid = f"c-{kind.replace('_', '-')}"
            method = "POST" if kind == "wxpay_v2" else "GET"
            reply = await client.request(method, sim.endpoint(cid) + path, content=b"<xml></xml>"
                                         if kind == "wxpay_v2" else None)
            assert reply.status_code == status, (kind, reply.status_code, reply.text[:200])
            assert sim.gateway_of(cid).kind == kind
        assert not add_channel(sim, channel("alipay_f2f", {"app_id": "1"}))


async def test_missing_credential_is_named() -> None:
    async with SimServer() as sim:
        with pytest.raises(ValueError, match="the simulator needs credentials.secret_key"):
            add_channel(sim, channel("stripe", {"api_key": "x"}))
