"""The PayPal probes over real HTTP against the simulated OAuth + Orders v2 API: every fault maps to its probe
outcome, the access token is cached and renewed once when refused, test orders are created and never approved,
and neither client credential appears in a result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes import ADAPTERS, ProbeContext, run_probe
from monitor.probes.paypal import SENTINEL, PayPalAdapter
from monitor.secret import Redactor
from monitor.sim.paypal import PayPalGateway
from monitor.sim.server import AppServer, SimServer

CLIENT_ID = "AeProbeClientId0123456789abcdef"
SECRET = "EProbeClientSecret9876543210zyx"
PROBES = ("query", "test_order")


def channel(endpoint: str, secret: str = SECRET, timeout: str = "2s", **test_order: Any) -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "paypal", "kind": "paypal", "weight": 10, "endpoint": endpoint,
        "credentials": {"client_id": CLIENT_ID, "client_secret": secret},
        "probes": {"query": {"every": "30s", "timeout": timeout},
                   "test_order": {"every": "5m", "timeout": timeout, **test_order}},
    })


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimServer, PayPalGateway]]:
    async with SimServer() as server:
        gw = PayPalGateway()
        gw.add_channel("paypal", client_id=CLIENT_ID, client_secret=SECRET)
        server.add_gateway(gw)
        yield server, gw


@pytest.fixture
def sent() -> list[str]:
    """The paths of every request the probes send."""
    return []


@pytest.fixture
async def ctx(clock: FixedClock, sent: list[str]) -> AsyncIterator[ProbeContext]:
    async def record(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    async with httpx.AsyncClient(trust_env=False, event_hooks={"request": [record]}) as client:
        yield ProbeContext(client, clock, Redactor([CLIENT_ID, SECRET]))


def clean(text: str | None) -> bool:
    return not any(v in (text or "") for v in (CLIENT_ID, SECRET))


def test_registered_by_kind() -> None:
    assert ADAPTERS["paypal"] is PayPalAdapter
    assert PayPalAdapter.supports == PROBES


def test_missing_credentials_are_a_config_problem() -> None:
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "paypal", "weight": 1, "endpoint": "http://127.0.0.1:1/",
                                        "credentials": {"client_id": CLIENT_ID}})
    with pytest.raises(ValueError, match="needs credentials client_id and client_secret"):
        PayPalAdapter(cfg)


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize(
    ("faults", "secret", "outcome", "code"),
    [
        pytest.param({}, SECRET, "ok", None, id="healthy"),
        pytest.param({"error_rate": 1.0}, SECRET, "http_error", "500", id="error"),
        pytest.param({"hang_rate": 1.0}, SECRET, "timeout", None, id="hang"),
        pytest.param({"bad_json_rate": 1.0}, SECRET, "bad_response", None, id="bad_json"),
        pytest.param({"maintenance_rate": 1.0}, SECRET, "maintenance", "SERVICE_UNAVAILABLE", id="maintenance"),
        pytest.param({}, "EWrongSecret000000000000", "business_error", "invalid_client", id="wrong_secret"),
    ],
)
async def test_outcomes(sim: tuple[SimServer, PayPalGateway], ctx: ProbeContext, probe: str, faults: dict[str, Any],
                        secret: str, outcome: str, code: str | None) -> None:
    server, gw = sim
    gw.faults("paypal").update(**faults)
    timeout = "0.3s" if "hang_rate" in faults else "2s"
    result = await run_probe(PayPalAdapter(channel(server.endpoint("paypal"), secret, timeout)), "paypal", probe, ctx)
    expected = code if outcome != "ok" else {"query": "RESOURCE_NOT_FOUND", "test_order": "CREATED"}[probe]
    assert (result.outcome, result.code) == (outcome, expected), result.detail
    assert clean(result.detail) and clean(result.code)
    if outcome == "timeout":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    orders = gw.channel("paypal").orders
    assert len(orders) == (1 if (outcome, probe) == ("ok", "test_order") else 0)


async def test_token_is_cached_and_query_finds_the_last_order(sim: tuple[SimServer, PayPalGateway],
                                                             ctx: ProbeContext, sent: list[str]) -> None:
    server, gw = sim
    adapter = PayPalAdapter(channel(server.endpoint("paypal").rstrip("/")))
    first = await run_probe(adapter, "paypal", "query", ctx)
    assert (first.outcome, first.code) == ("ok", "RESOURCE_NOT_FOUND") and SENTINEL in first.detail
    created = await run_probe(adapter, "paypal", "test_order", ctx)
    assert (created.outcome, created.code) == ("ok", "CREATED") and "expires unapproved" in created.detail
    found = await run_probe(adapter, "paypal", "query", ctx)
    assert (found.outcome, found.code) == ("ok", "CREATED") and f"order {adapter.last_order} " in found.detail
    assert [p.split()[1].split("/", 2)[2] for p in sent] == [
        "v1/oauth2/token", f"v2/checkout/orders/{SENTINEL}", "v2/checkout/orders",
        f"v2/checkout/orders/{adapter.last_order}"]
    (truth,) = gw.ground_truth()  # created, never approved or captured, for the configured amount
    assert (truth.trade_no, truth.money, truth.paid) == (adapter.last_order, Decimal("0.01"), False)
    assert gw.channel("paypal").orders[truth.trade_no].status == "CREATED"


async def test_a_refused_token_is_renewed_once(sim: tuple[SimServer, PayPalGateway], ctx: ProbeContext,
                                               sent: list[str]) -> None:
    server, gw = sim
    adapter = PayPalAdapter(channel(server.endpoint("paypal")))
    assert (await run_probe(adapter, "paypal", "query", ctx)).outcome == "ok"
    gw.channel("paypal").tokens.clear()  # PayPal forgets the token before its expires_in
    result = await run_probe(adapter, "paypal", "test_order", ctx)
    assert result.outcome == "ok", result.detail
    assert [p.rsplit("/", 2)[-2:] for p in sent if "token" in p or p.startswith("POST")] == [
        ["oauth2", "token"], ["checkout", "orders"], ["oauth2", "token"], ["checkout", "orders"]]


async def test_amount_is_the_configured_one(sim: tuple[SimServer, PayPalGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    result = await run_probe(PayPalAdapter(channel(server.endpoint("paypal"), amount="1.5")), "paypal", "test_order",
                             ctx)
    assert result.outcome == "ok" and "1.50 USD" in result.detail
    assert gw.ground_truth()[0].money == Decimal("1.50")


@pytest.mark.parametrize(
    ("currency", "amount", "value"),
    [("EUR", "1.5", "1.50"), ("jpy", "0.01", "1"), ("JPY", "120.4", "121"), ("usd", "0.001", "0.01")],
)
async def test_the_configured_currency_is_sent(sim: tuple[SimServer, PayPalGateway], ctx: ProbeContext,
                                               currency: str, amount: str, value: str) -> None:
    """Uppercase, the amount rounded up to what the currency can express (never a zero-yen order)."""
    server, gw = sim
    cfg = channel(server.endpoint("paypal"), amount=amount)
    cfg = ChannelConfig.model_validate({**cfg.model_dump(), "credentials": {"client_id": CLIENT_ID,
                                                                            "client_secret": SECRET},
                                        "currency": currency})
    result = await run_probe(PayPalAdapter(cfg), "paypal", "test_order", ctx)
    assert result.outcome == "ok" and f"for {value} {currency.upper()}," in result.detail, result.detail
    (order,) = gw.channel("paypal").orders.values()
    assert order.units[0]["amount"] == {"currency_code": currency.upper(), "value": value}


_AUTH_FAILURE = (401, {"name": "AUTHENTICATION_FAILURE", "message": "Authentication failed"})


@pytest.mark.parametrize(
    ("answers", "outcome", "code"),
    [
        ([_AUTH_FAILURE, _AUTH_FAILURE], "business_error", "AUTHENTICATION_FAILURE"),
        ([(422, {"name": "UNPROCESSABLE_ENTITY", "message": "semantically incorrect",
                 "details": [{"issue": "CURRENCY_NOT_SUPPORTED", "value": "USD"}]})], "business_error",
         "UNPROCESSABLE_ENTITY"),
        ([(502, "<html>Bad Gateway</html>")], "http_error", "502"),
        ([(201, {"id": "5O190127TN364715T", "status": "CREATED", "links": []})], "bad_response", None),
        ([(201, {"id": "5O190127TN364715T", "status": "COMPLETED"})], "bad_response", None),
        ([(201, {"status": "CREATED"})], "bad_response", None),
        ([(201, {"id": "5O190127TN364715T", "status": "CREATED",
                 "links": [{"rel": "approve", "href": "https://www.paypal.com/checkoutnow?token=5O190127TN364715T"}]})],
         "ok", "CREATED"),
    ],
)
async def test_answers_the_simulator_does_not_give(ctx: ProbeContext, answers: list[tuple[int, Any]], outcome: str,
                                                   code: str | None) -> None:
    tokens = 0

    async def token(request: Request) -> Response:
        nonlocal tokens
        tokens += 1
        return Response(json.dumps({"access_token": f"A21AA-{tokens}", "token_type": "Bearer", "expires_in": 32400}),
                        media_type="application/json")

    async def create(request: Request) -> Response:
        assert json.loads(await request.body())["intent"] == "CAPTURE"
        status, body = answers.pop(0)
        return Response(body if isinstance(body, str) else json.dumps(body), status_code=status,
                        media_type="application/json")

    app = Starlette(routes=[Route("/v1/oauth2/token", token, methods=["POST"]),
                            Route("/v2/checkout/orders", create, methods=["POST"])])
    async with AppServer(app) as server:
        result = await run_probe(PayPalAdapter(channel(server.base_url + "/")), "paypal", "test_order", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail
    assert not answers and tokens == (2 if code == "AUTHENTICATION_FAILURE" else 1)


async def test_unsupported_probe_type(ctx: ProbeContext) -> None:
    result = await run_probe(PayPalAdapter(channel("http://127.0.0.1:1/")), "paypal", "balance", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail
