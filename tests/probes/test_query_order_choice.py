"""Which order a query probe asks about, and why it matters for signed protocols.

epay V2 signs its answer about an existing order but not "no such order": a stub gateway that
signs ``api/merchant/info`` with the right platform key but the order answers with another key shows the query
probe saying ``ok`` for the sentinel and ``bad_signature`` as soon as it asks about a real order — its own test order
(remembered even when the create reply failed verification) or one the store recalls after a restart.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.daemon import TEST_ORDER_RECALL, recall_order
from monitor.models import OrderEvent, ProbeResult
from monitor.probes import ProbeContext, run_probe
from monitor.probes.epay_v2 import EpayV2Adapter
from monitor.protocols.epay_v2 import base64_from_pem, private_key_pem, public_key_pem, signed_reply
from monitor.secret import Redactor
from monitor.sim import AppServer
from monitor.sim.php import php_json, post_params
from monitor.store import Store


@functools.cache
def key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def channel(endpoint: str) -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "v2", "kind": "epay_v2", "weight": 1, "endpoint": endpoint,
        "credentials": {"pid": "1001", "private_key": base64_from_pem(private_key_pem(key("merchant"))),
                        "platform_public_key": public_key_pem(key("platform"))},
        "probes": {"query": {"timeout": "2s"}, "test_order": {"timeout": "2s"}},
    })


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield ProbeContext(client, clock, Redactor([]))


@pytest.fixture
async def gateway(clock: FixedClock) -> AsyncIterator[tuple[str, set[str]]]:
    """A V2 gateway whose order answers are signed with the wrong key; the orders it knows."""
    known = {"REAL0001"}
    now = int(clock.now().timestamp())

    async def info(request: Request) -> Response:
        body = {"code": 0, "pid": 1001, "status": 1, "money": "0.00"}
        return PlainTextResponse(php_json(signed_reply(body, private_key_pem(key("platform")), now)))

    async def create(request: Request) -> Response:
        known.add((await post_params(request))["out_trade_no"])
        body = {"code": 0, "trade_no": "2026112611000012345", "pay_type": "jump", "pay_info": "http://x/"}
        return PlainTextResponse(php_json(signed_reply(body, private_key_pem(key("wrong")), now)))

    async def query(request: Request) -> Response:
        asked = (await post_params(request))["out_trade_no"]
        if asked not in known:
            return PlainTextResponse('{"code":-1,"msg":"订单号不存在"}')  # unsigned, as every V2 error
        body = {"code": 0, "out_trade_no": asked, "trade_no": "2026112611000012345", "status": 0}
        return PlainTextResponse(php_json(signed_reply(body, private_key_pem(key("wrong")), now)))

    routes = [Route("/api/merchant/info", info, methods=["POST"]), Route("/api/pay/create", create, methods=["POST"]),
              Route("/api/pay/query", query, methods=["POST"])]
    async with AppServer(Starlette(routes=routes)) as server:
        yield server.base_url + "/", known


async def test_the_sentinel_cannot_show_a_bad_signature_a_test_order_can(ctx: ProbeContext,
                                                                         gateway: tuple[str, set[str]]) -> None:
    endpoint, known = gateway
    adapter = EpayV2Adapter(channel(endpoint))
    sentinel = await run_probe(adapter, "v2", "query", ctx)
    assert sentinel.outcome == "ok" and "for the sentinel order (unsigned" in sentinel.detail
    created = await run_probe(adapter, "v2", "test_order", ctx)
    assert created.outcome == "bad_signature"
    assert adapter.last_order in known and f"test order {adapter.last_order} may exist" in created.detail
    asked = await run_probe(adapter, "v2", "query", ctx)
    assert (asked.outcome, asked.code) == ("bad_signature", "0"), asked.detail


async def test_after_a_restart_the_recalled_order_is_asked(ctx: ProbeContext, clock: FixedClock,
                                                           gateway: tuple[str, set[str]]) -> None:
    endpoint, _ = gateway
    adapter = EpayV2Adapter(channel(endpoint))
    calls: list[str] = []

    async def recall(channel_id: str) -> str | None:
        calls.append(channel_id)
        return "REAL0001"

    adapter.recall = recall
    results = [await run_probe(adapter, "v2", "query", ctx) for _ in range(2)]
    assert [r.outcome for r in results] == ["bad_signature", "bad_signature"]
    assert calls == ["v2"]  # reused, not asked again on every run
    clock.advance(timedelta(minutes=6))
    await run_probe(adapter, "v2", "query", ctx)
    assert calls == ["v2", "v2"]

    async def broken(channel_id: str) -> str | None:
        raise RuntimeError("database is locked")

    fresh = EpayV2Adapter(channel(endpoint))
    fresh.recall = broken
    result = await run_probe(fresh, "v2", "query", ctx)
    assert result.outcome == "ok" and "sentinel" in result.detail  # a failed lookup costs nothing but the order


def test_recall_prefers_the_newer_of_the_last_test_order_and_the_last_paid_order(sqlite_store: Store,
                                                                                 clock: FixedClock) -> None:
    store = sqlite_store
    assert recall_order(store, "v2", clock.now()) is None
    t0 = clock.now()
    store.add_probe_results([
        ProbeResult("v2", "test_order", "ok", 0.1, t0, "HTTP 200, code 0 (signed): order "
                    "paymon20261126030000abcd1234 (trade_no 1) created"),
        ProbeResult("v2", "test_order", "business_error", 0.1, t0 + timedelta(minutes=5), "refused: code -1"),
        ProbeResult("other", "test_order", "ok", 0.1, t0 + timedelta(minutes=6), "order paymon20261126030600ffff0000"),
    ])
    assert recall_order(store, "v2", t0 + timedelta(minutes=10)) == "paymon20261126030000abcd1234"
    store.apply_events([
        OrderEvent(order_id="SHOP0001", channel="v2", event="order_created", ts=t0 + timedelta(minutes=1)),
        OrderEvent(order_id="SHOP0001", channel="v2", event="callback_received", ts=t0 + timedelta(minutes=2),
                   verified=True),
        OrderEvent(order_id="SHOP0002", channel="v2", event="order_created", ts=t0 + timedelta(minutes=3)),
    ])
    assert recall_order(store, "v2", t0 + timedelta(minutes=10)) == "SHOP0001"  # paid after the test order
    assert recall_order(store, "v2", t0 + TEST_ORDER_RECALL + timedelta(hours=1)) == "SHOP0001"
    store.add_probe_results([ProbeResult("v2", "test_order", "bad_signature", 0.1, t0 + timedelta(minutes=20),
                                         "api/pay/create: reply signature does not verify (test order "
                                         "paymon20261126032000abcd9999 may exist)")])
    assert recall_order(store, "v2", t0 + timedelta(minutes=21)) == "paymon20261126032000abcd9999"
