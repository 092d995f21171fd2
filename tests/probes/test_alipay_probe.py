"""The Alipay 当面付 probes over real HTTP against the simulated gateway: every fault maps to its probe
outcome, test orders are always closed (even when the create answer fails its check), no key leaks."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.models import ProbeResult
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.alipay import AlipayAdapter
from monitor.protocols.alipay import (
    TRADE_CLOSED,
    WAIT_BUYER_PAY,
    generate_private_key_pem,
    public_key_pem,
    strip_pem,
)
from monitor.secret import Redactor
from monitor.sim import SimServer
from monitor.sim.alipay import AlipayGateway

APP_ID = "2021000000000042"
APP_KEY = generate_private_key_pem()
OTHER_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
CH = "ali-main"


@dataclass
class Env:
    sim: SimServer
    gw: AlipayGateway
    ctx: ProbeContext

    def adapter(self, timeout: str = "2s", **creds: str | None) -> AlipayAdapter:
        return AlipayAdapter(channel(self.sim.endpoint(CH), self.gw.platform_public_key_pem(CH), timeout, creds=creds))

    def statuses(self) -> list[str]:
        return [o.status for o in self.gw.channel(CH).orders.values()]


def channel(endpoint: str, platform_pub: str, timeout: str = "2s", *, close: bool = True,
            creds: dict[str, str | None] | None = None) -> ChannelConfig:
    credentials = {"app_id": APP_ID, "private_key": strip_pem(APP_KEY), "alipay_public_key": strip_pem(platform_pub),
                   **(creds or {})}
    return ChannelConfig.model_validate({
        "id": CH, "kind": "alipay_f2f", "weight": 10, "endpoint": endpoint,
        "credentials": {k: v for k, v in credentials.items() if v is not None},
        "probes": {"query": {"timeout": timeout}, "test_order": {"timeout": timeout, "amount": "0.01", "close": close}},
    })


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    gw = AlipayGateway(rng=random.Random(7), clock=clock, platform_private_key=PLATFORM_KEY)
    gw.add_channel(CH, app_id=APP_ID, app_private_key=APP_KEY)
    async with SimServer() as sim, httpx.AsyncClient() as client:
        sim.add_gateway(gw)
        secrets = [APP_KEY, strip_pem(APP_KEY), OTHER_KEY, strip_pem(OTHER_KEY)]
        yield Env(sim, gw, ProbeContext(client, clock, Redactor(secrets)))


def assert_no_secret(result: ProbeResult) -> None:
    for key in (APP_KEY, OTHER_KEY):
        for text in (result.detail, result.code or ""):
            assert strip_pem(key)[40:80] not in text and "PRIVATE KEY" not in text and APP_ID not in text


def test_registered_by_kind() -> None:
    assert ADAPTERS["alipay_f2f"] is AlipayAdapter
    assert AlipayAdapter.supports == ("query", "test_order")


WRONG_KEY = {"private_key": OTHER_KEY}
CASES = [
    ({}, {}, "ok"),
    ({"hang_rate": 1.0}, {}, "timeout"),
    ({"error_rate": 1.0}, {}, "http_error"),
    ({"bad_json_rate": 1.0}, {}, "bad_response"),
    ({"bad_signature_rate": 1.0}, {}, "bad_signature"),
    ({"maintenance_rate": 1.0}, {}, "maintenance"),
    ({}, WRONG_KEY, "business_error"),
]


@pytest.mark.parametrize(("faults", "creds", "outcome"), CASES)
async def test_query_outcomes(env: Env, faults: dict[str, Any], creds: dict[str, str], outcome: str) -> None:
    env.sim.faults(CH).update(**faults)
    result = await run_probe(env.adapter("0.3s", **creds), CH, "query", env.ctx)
    assert result.outcome == outcome, result.detail
    expected_code = {"ok": "40004/ACQ.TRADE_NOT_EXIST", "http_error": "500", "maintenance": "20000/isp.unknow-error",
                     "business_error": "40002/isv.invalid-signature"}.get(outcome)
    assert result.code == expected_code, result.detail
    if outcome == "timeout":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    assert_no_secret(result)


@pytest.mark.parametrize(("faults", "creds", "outcome"), CASES)
async def test_test_order_outcomes_leave_no_open_order(env: Env, faults: dict[str, Any], creds: dict[str, str],
                                                       outcome: str) -> None:
    env.sim.faults(CH).update(**faults)
    result = await run_probe(env.adapter("0.3s", **creds), CH, "test_order", env.ctx)
    assert result.outcome == outcome, result.detail
    assert WAIT_BUYER_PAY not in env.statuses()
    if outcome == "ok":
        assert result.code == "10000" and "qr_code https://qr.alipay.com/" in result.detail
        assert result.detail.endswith("; closed") and env.statuses() == [TRADE_CLOSED]
    if outcome == "bad_signature":  # created, then closed; the close answer fails its check too
        assert env.statuses() == [TRADE_CLOSED] and "close failed" in result.detail
    if outcome in ("maintenance", "business_error"):  # refused: no order, no close attempted
        assert env.statuses() == [] and "close" not in result.detail
    assert_no_secret(result)


async def test_close_runs_when_the_create_answer_fails_its_check(env: Env) -> None:
    """Create answer with a corrupted signature, clean close: the order is closed and the outcome stays."""
    faults = env.sim.faults(CH)
    faults.update(bad_signature_rate=1.0)

    async def heal(response: httpx.Response) -> None:
        faults.update(bad_signature_rate=0.0)

    env.ctx.client.event_hooks["response"] = [heal]
    result = await run_probe(env.adapter(), CH, "test_order", env.ctx)
    assert (result.outcome, result.code) == ("bad_signature", None)
    assert result.detail.endswith("; order closed") and env.statuses() == [TRADE_CLOSED]


async def test_query_asks_for_the_last_test_order(env: Env) -> None:
    adapter = env.adapter()
    assert (await run_probe(adapter, CH, "query", env.ctx)).detail.startswith("sentinel order")
    created = await run_probe(adapter, CH, "test_order", env.ctx)
    assert created.outcome == "ok"
    result = await run_probe(adapter, CH, "query", env.ctx)
    assert (result.outcome, result.code) == ("ok", "10000")
    assert result.detail == "last test order: 10000 trade_status TRADE_CLOSED"


async def test_without_close_the_order_stays_open(env: Env) -> None:
    cfg = channel(env.sim.endpoint(CH), env.gw.platform_public_key_pem(CH), close=False)
    result = await run_probe(AlipayAdapter(cfg), CH, "test_order", env.ctx)
    assert result.outcome == "ok" and "closed" not in result.detail
    assert env.statuses() == [WAIT_BUYER_PAY]


async def test_wrong_platform_key_is_bad_signature(env: Env) -> None:
    adapter = env.adapter(alipay_public_key=strip_pem(public_key_pem(OTHER_KEY)))
    for probe in ("query", "test_order"):
        assert (await run_probe(adapter, CH, probe, env.ctx)).outcome == "bad_signature"
    assert env.statuses() == [TRADE_CLOSED]  # the close was still sent (and worked)


async def test_unknown_app_id_is_an_unsigned_business_error(env: Env) -> None:
    result = await run_probe(env.adapter(app_id="2021999999999999"), CH, "query", env.ctx)
    assert (result.outcome, result.code) == ("business_error", "40002/isv.invalid-app-id")
    assert "(unsigned)" in result.detail


async def test_pem_keys_and_endpoint_without_slash(env: Env) -> None:
    pub = env.gw.platform_public_key_pem(CH)
    cfg = channel(env.sim.endpoint(CH).rstrip("/"), pub, creds={"private_key": APP_KEY, "alipay_public_key": pub})
    assert (await run_probe(AlipayAdapter(cfg), CH, "query", env.ctx)).outcome == "ok"


async def test_unsupported_probe_type(env: Env) -> None:
    result = await run_probe(env.adapter(), CH, "balance", env.ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail


@pytest.mark.parametrize(
    ("creds", "message"),
    [({"app_id": None, "private_key": None}, "needs credentials app_id, private_key"),
     ({"private_key": "not-a-key"}, "private_key is not an RSA private key"),
     ({"alipay_public_key": "AAAA"}, "alipay_public_key is not an RSA public key")],
)
def test_bad_credentials_are_config_problems(creds: dict[str, str | None], message: str) -> None:
    cfg = channel("http://127.0.0.1:1/x/", public_key_pem(PLATFORM_KEY), creds=creds)
    with pytest.raises(ValueError, match=message) as exc:
        AlipayAdapter(cfg)
    assert "not-a-key" not in str(exc.value)
