"""The PayPal OAuth + Orders v2 simulator over real HTTP on loopback: tokens, orders, errors, fault knobs, the
buyer's return to the shop (which captures there) and signed ``CHECKOUT.ORDER.APPROVED`` webhooks."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.clock import FixedClock
from monitor.protocols.paypal import transmission_message, verify_transmission
from monitor.sim import AppServer, Faults, SimServer
from monitor.sim.paypal import PayPalGateway
from tests.conftest import PATIENCE_S

CLIENT_ID = "AeSimClientId0123456789"
SECRET = "ESimClientSecret9876543210"
START = datetime(2026, 11, 26, 3, 12, 0, tzinfo=UTC)
DELAYS = (0.05, 0.1)


@dataclass
class Shop:
    """The shop side: a return handler that captures the order (as a shop must) and a webhook endpoint."""

    client: httpx.AsyncClient
    api: str = ""
    token: str = ""
    hook_status: int = 200
    returns: list[dict[str, str]] = field(default_factory=list)
    captures: list[int] = field(default_factory=list)
    hooks: list[tuple[float, bytes, dict[str, str]]] = field(default_factory=list)

    async def on_return(self, request: Request) -> Response:
        self.returns.append(dict(request.query_params))
        reply = await self.client.post(f"{self.api}v2/checkout/orders/{request.query_params['token']}/capture",
                                       headers={"Authorization": f"Bearer {self.token}"}, json={})
        self.captures.append(reply.status_code)
        return PlainTextResponse("thanks")

    async def on_hook(self, request: Request) -> Response:
        self.hooks.append((time.monotonic(), await request.body(), dict(request.headers)))
        return PlainTextResponse("", status_code=self.hook_status)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as c:
        yield c


@pytest.fixture
async def env(client: httpx.AsyncClient) -> AsyncIterator[tuple[SimServer, PayPalGateway, Shop, str]]:
    """A gateway with channel ``pp`` (webhooks to the shop) and the shop's base URL."""
    shop = Shop(client)
    app = Starlette(routes=[Route("/return", shop.on_return), Route("/hook", shop.on_hook, methods=["POST"])])
    async with AppServer(app) as shop_srv, SimServer() as server:
        gw = PayPalGateway(rng=random.Random(3), clock=FixedClock(START), token_ttl_s=600,
                           notify_retry_delays=DELAYS)
        server.add_gateway(gw)
        gw.add_channel("pp", client_id=CLIENT_ID, client_secret=SECRET, webhook_url=f"{shop_srv.base_url}/hook",
                       webhook_id="WH-TEST", faults=Faults(pay_probability=1.0, callback_delay_s=0.0))
        shop.api = server.endpoint("pp")
        shop.token = await get_token(client, server)
        yield server, gw, shop, shop_srv.base_url


async def get_token(client: httpx.AsyncClient, server: SimServer, secret: str = SECRET) -> str:
    reply = await client.post(server.endpoint("pp") + "v1/oauth2/token", auth=(CLIENT_ID, secret),
                              data={"grant_type": "client_credentials"})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def order_body(shop_base: str = "http://127.0.0.1:9", value: str = "10.00", currency: str = "USD") -> dict[str, Any]:
    return {"intent": "CAPTURE",
            "purchase_units": [{"invoice_id": "ORDER0001", "amount": {"currency_code": currency, "value": value}}],
            "application_context": {"return_url": f"{shop_base}/return", "cancel_url": f"{shop_base}/cancel"}}


async def call(client: httpx.AsyncClient, env: tuple[SimServer, PayPalGateway, Shop, str], method: str, path: str,
               body: Any = None, **headers: str) -> httpx.Response:
    server, _, shop, _ = env
    return await client.request(method, server.endpoint("pp") + path, json=body,
                                headers={"Authorization": f"Bearer {shop.token}", **headers})


async def create(client: httpx.AsyncClient, env: tuple[SimServer, PayPalGateway, Shop, str]) -> str:
    reply = await call(client, env, "POST", "v2/checkout/orders", order_body(env[3]))
    assert reply.status_code == 201, reply.text
    order_id: str = reply.json()["id"]
    return order_id


# ---- OAuth ------------------------------------------------------------------------------------------------------


async def test_token_is_issued_reused_and_checked(env: tuple[SimServer, PayPalGateway, Shop, str],
                                                  client: httpx.AsyncClient) -> None:
    server, _, shop, _ = env
    reply = await client.post(server.endpoint("pp") + "v1/oauth2/token", auth=(CLIENT_ID, SECRET),
                              data={"grant_type": "client_credentials"})
    body = reply.json()
    assert set(body) == {"scope", "access_token", "token_type", "app_id", "expires_in", "nonce"}
    assert (body["access_token"], body["token_type"], body["expires_in"]) == (shop.token, "Bearer", 600)
    assert body["access_token"].startswith("A21AA") and body["app_id"].startswith("APP-")

    wrong = await client.post(server.endpoint("pp") + "v1/oauth2/token", auth=(CLIENT_ID, "nope"),
                              data={"grant_type": "client_credentials"})
    assert (wrong.status_code, wrong.json()) == (
        401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
    no_grant = await client.post(server.endpoint("pp") + "v1/oauth2/token", auth=(CLIENT_ID, SECRET))
    assert (no_grant.status_code, no_grant.json()["error"]) == (400, "unsupported_grant_type")


async def test_expired_and_unknown_tokens_fail_authentication(env: tuple[SimServer, PayPalGateway, Shop, str],
                                                              client: httpx.AsyncClient) -> None:
    server, gw, shop, _ = env
    order_id = await create(client, env)
    assert isinstance(gw._clock, FixedClock)
    gw._clock.advance(601)
    expired = await call(client, env, "GET", f"v2/checkout/orders/{order_id}")
    assert expired.status_code == 401 and expired.json()["name"] == "AUTHENTICATION_FAILURE"
    bogus = await client.get(server.endpoint("pp") + f"v2/checkout/orders/{order_id}",
                             headers={"Authorization": "Bearer A21AAbogus"})
    assert bogus.status_code == 401
    fresh = await get_token(client, server)
    assert fresh != shop.token
    assert (await client.get(server.endpoint("pp") + f"v2/checkout/orders/{order_id}",
                             headers={"Authorization": f"Bearer {fresh}"})).status_code == 200


# ---- orders -----------------------------------------------------------------------------------------------------


async def test_order_is_created_approved_returned_to_and_captured_by_the_shop(
    env: tuple[SimServer, PayPalGateway, Shop, str], client: httpx.AsyncClient
) -> None:
    server, gw, shop, _ = env
    reply = await call(client, env, "POST", "v2/checkout/orders", order_body(env[3]))
    assert reply.status_code == 201
    created = reply.json()
    order_id = created["id"]
    assert re.fullmatch(r"[A-Z0-9]{17}", order_id) and created["status"] == "CREATED"
    rels = {link["rel"]: link for link in created["links"]}
    assert set(rels) == {"self", "approve", "update", "capture"}
    assert rels["approve"]["href"] == f"{server.endpoint('pp')}checkoutnow?token={order_id}"
    assert (await client.get(rels["approve"]["href"])).status_code == 200

    early = await call(client, env, "POST", f"v2/checkout/orders/{order_id}/capture", {})
    assert early.status_code == 422
    assert (early.json()["name"], early.json()["details"][0]["issue"]) == ("UNPROCESSABLE_ENTITY",
                                                                          "ORDER_NOT_APPROVED")

    assert gw.buyer_visits("pp", order_id) is True
    assert await gw.wait_notifies(PATIENCE_S)
    assert [r["token"] for r in shop.returns] == [order_id] and re.fullmatch(r"[A-Z0-9]{13}",
                                                                             shop.returns[0]["PayerID"])
    assert shop.captures == [201]
    shown = (await call(client, env, "GET", f"v2/checkout/orders/{order_id}")).json()
    assert shown["status"] == "COMPLETED"
    [capture] = shown["purchase_units"][0]["payments"]["captures"]
    assert (capture["status"], capture["amount"], capture["invoice_id"]) == (
        "COMPLETED", {"currency_code": "USD", "value": "10.00"}, "ORDER0001")
    assert shown["payer"]["payer_id"] == shop.returns[0]["PayerID"]
    again = await call(client, env, "POST", f"v2/checkout/orders/{order_id}/capture", {})
    assert again.json()["details"][0]["issue"] == "ORDER_ALREADY_CAPTURED"

    [truth] = gw.ground_truth()
    assert (truth.trade_no, truth.out_trade_no, truth.money, truth.paid, truth.paid_at) == (
        order_id, "ORDER0001", Decimal("10.00"), True, START)
    assert (truth.callback_sent, truth.callback_acknowledged, len(truth.attempts)) == (True, True, 2)  # return + hook


async def test_buyer_who_never_returns_leaves_the_order_approved(env: tuple[SimServer, PayPalGateway, Shop, str],
                                                                 client: httpx.AsyncClient) -> None:
    _, gw, shop, _ = env
    gw.channel("pp").return_probability = 0.0
    gw.channel("pp").webhook_url = None
    order_id = await create(client, env)
    assert gw.buyer_visits("pp", order_id) is True
    assert await gw.wait_notifies(PATIENCE_S)
    assert shop.returns == [] and shop.hooks == []
    assert (await call(client, env, "GET", f"v2/checkout/orders/{order_id}")).json()["status"] == "APPROVED"
    [truth] = gw.ground_truth()
    assert (truth.paid, truth.callback_sent, truth.callback_dropped, truth.callback_acknowledged) == (
        True, False, False, False)


async def test_representation_request_id_and_unknown_order(env: tuple[SimServer, PayPalGateway, Shop, str],
                                                           client: httpx.AsyncClient) -> None:
    _, gw, _, _ = env
    full = await call(client, env, "POST", "v2/checkout/orders", order_body(), Prefer="return=representation")
    assert full.json()["purchase_units"][0]["amount"] == {"currency_code": "USD", "value": "10.00"}
    assert full.json()["intent"] == "CAPTURE" and full.json()["create_time"] == "2026-11-26T03:12:00Z"
    first = await call(client, env, "POST", "v2/checkout/orders", order_body(), **{"PayPal-Request-Id": "r-1"})
    second = await call(client, env, "POST", "v2/checkout/orders", order_body(), **{"PayPal-Request-Id": "r-1"})
    assert first.json()["id"] == second.json()["id"]
    assert len(gw.ground_truth()) == 2
    missing = await call(client, env, "GET", "v2/checkout/orders/NOSUCHORDER00000")
    assert missing.status_code == 404
    body = missing.json()
    assert (body["name"], body["details"][0]["issue"], body["details"][0]["value"]) == (
        "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "NOSUCHORDER00000")
    assert missing.headers["paypal-debug-id"] == body["debug_id"]


@pytest.mark.parametrize(("body", "status", "issue", "field_"), [
    ("{not json", 400, "MALFORMED_REQUEST_JSON", "/"),
    ({"purchase_units": [{"amount": {"currency_code": "USD", "value": "1.00"}}]}, 400, "MISSING_REQUIRED_PARAMETER",
     "/intent"),
    ({"intent": "SALE", "purchase_units": []}, 400, "INVALID_PARAMETER_VALUE", "/intent"),
    ({"intent": "CAPTURE"}, 400, "MISSING_REQUIRED_PARAMETER", "/purchase_units"),
    ({"intent": "CAPTURE", "purchase_units": [{"amount": {"currency_code": "USD"}}]}, 400,
     "MISSING_REQUIRED_PARAMETER", "/purchase_units/0/amount/value"),
    (order_body(value="ten"), 400, "INVALID_PARAMETER_SYNTAX", "/purchase_units/0/amount/value"),
    (order_body(value="10.001"), 422, "DECIMAL_PRECISION", "/purchase_units/@reference_id=='default'/amount/value"),
    (order_body(value="10.5", currency="JPY"), 422, "DECIMAL_PRECISION",
     "/purchase_units/@reference_id=='default'/amount/value"),
    (order_body(value="0.00"), 422, "CANNOT_BE_ZERO_OR_NEGATIVE",
     "/purchase_units/@reference_id=='default'/amount/value"),
    (order_body(currency="XXX"), 422, "CURRENCY_NOT_SUPPORTED",
     "/purchase_units/@reference_id=='default'/amount/currency_code"),
])
async def test_create_errors(env: tuple[SimServer, PayPalGateway, Shop, str], client: httpx.AsyncClient,
                             body: Any, status: int, issue: str, field_: str) -> None:
    server, gw, shop, _ = env
    content = body if isinstance(body, str) else json.dumps(body)
    reply = await client.post(server.endpoint("pp") + "v2/checkout/orders", content=content,
                              headers={"Authorization": f"Bearer {shop.token}", "Content-Type": "application/json"})
    assert reply.status_code == status
    error = reply.json()
    assert error["name"] == ("INVALID_REQUEST" if status == 400 else "UNPROCESSABLE_ENTITY")
    assert (error["details"][0]["issue"], error["details"][0]["field"]) == (issue, field_)
    assert gw.ground_truth() == []


# ---- request faults ---------------------------------------------------------------------------------------------


async def test_request_faults(env: tuple[SimServer, PayPalGateway, Shop, str], client: httpx.AsyncClient) -> None:
    _, gw, _, _ = env
    faults = gw.faults("pp")
    faults.update(error_rate=1.0)
    assert (await call(client, env, "POST", "v2/checkout/orders", order_body())).status_code == 500
    faults.update(error_rate=0.0, bad_json_rate=1.0)
    html = await call(client, env, "POST", "v2/checkout/orders", order_body())
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        html.json()
    faults.update(bad_json_rate=0.0, maintenance_rate=1.0)
    busy = await call(client, env, "POST", "v2/checkout/orders", order_body())
    assert busy.status_code == 503 and busy.json()["name"] == "SERVICE_UNAVAILABLE"
    faults.update(maintenance_rate=0.0, hang_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):
        await client.get(env[0].endpoint("pp") + "v2/checkout/orders/X", timeout=0.3)
    faults.update(hang_rate=0.0)
    assert gw.ground_truth() == []


# ---- webhooks ---------------------------------------------------------------------------------------------------


async def verify_remotely(client: httpx.AsyncClient, env: tuple[SimServer, PayPalGateway, Shop, str], body: bytes,
                          headers: dict[str, str]) -> str:
    reply = await call(client, env, "POST", "v1/notifications/verify-webhook-signature", {
        "auth_algo": headers["paypal-auth-algo"], "cert_url": headers["paypal-cert-url"],
        "transmission_id": headers["paypal-transmission-id"], "transmission_sig": headers["paypal-transmission-sig"],
        "transmission_time": headers["paypal-transmission-time"], "webhook_id": "WH-TEST",
        "webhook_event": json.loads(body)})
    status: str = reply.json()["verification_status"]
    return status


async def verifies_locally(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> bool:
    cert = (await client.get(headers["paypal-cert-url"])).content
    message = transmission_message(headers["paypal-transmission-id"], headers["paypal-transmission-time"], "WH-TEST",
                                   body)
    return verify_transmission(cert, headers["paypal-transmission-sig"], message)


async def test_approved_webhook_is_signed(env: tuple[SimServer, PayPalGateway, Shop, str],
                                         client: httpx.AsyncClient) -> None:
    _, gw, shop, _ = env
    order_id = await create(client, env)
    gw.buyer_visits("pp", order_id)
    assert await gw.wait_notifies(PATIENCE_S)
    [(_, body, headers)] = shop.hooks
    event = json.loads(body)
    assert (event["event_type"], event["resource_type"], event["resource"]["id"], event["resource"]["status"]) == (
        "CHECKOUT.ORDER.APPROVED", "checkout-order", order_id, "APPROVED")
    assert headers["paypal-auth-algo"] == "SHA256withRSA"
    assert headers["paypal-cert-url"].startswith(env[0].endpoint("pp"))
    assert await verifies_locally(client, body, headers)
    assert await verify_remotely(client, env, body, headers) == "SUCCESS"
    tampered = json.dumps({**event, "summary": "changed"}).encode()
    assert await verify_remotely(client, env, tampered, headers) == "FAILURE"


async def test_bad_signature_fails_verification(env: tuple[SimServer, PayPalGateway, Shop, str],
                                                client: httpx.AsyncClient) -> None:
    _, gw, shop, _ = env
    gw.faults("pp").update(bad_signature_rate=1.0)
    order_id = await create(client, env)
    gw.buyer_visits("pp", order_id)
    assert await gw.wait_notifies(PATIENCE_S)
    [(_, body, headers)] = shop.hooks
    assert not await verifies_locally(client, body, headers)
    assert await verify_remotely(client, env, body, headers) == "FAILURE"


async def test_buyer_knobs_pay_drop_duplicate(env: tuple[SimServer, PayPalGateway, Shop, str],
                                              client: httpx.AsyncClient) -> None:
    _, gw, shop, _ = env
    faults = gw.faults("pp")
    faults.update(pay_probability=0.0)
    unpaid = await create(client, env)
    assert gw.buyer_visits("pp", unpaid) is False
    faults.update(pay_probability=1.0, callback_drop_rate=1.0)
    dropped = await create(client, env)
    assert gw.buyer_visits("pp", dropped) is True
    faults.update(callback_drop_rate=0.0, duplicate_callback_rate=1.0)
    twice = await create(client, env)
    assert gw.buyer_visits("pp", twice) is True
    assert await gw.wait_notifies(PATIENCE_S)

    by_id = {t.trade_no: t for t in gw.ground_truth()}
    assert (by_id[unpaid].paid, by_id[unpaid].callback_sent) == (False, False)
    assert (by_id[dropped].paid, by_id[dropped].callback_dropped, by_id[dropped].callback_sent) == (True, True, False)
    assert len(by_id[twice].attempts) == 4  # two returns, two webhooks
    assert [r["token"] for r in shop.returns] == [twice, twice]
    assert sorted(shop.captures) == [201, 422]  # the second return finds it captured
    assert [json.loads(b)["resource"]["id"] for _, b, _ in shop.hooks] == [twice, twice]


async def test_unacknowledged_webhook_is_retried_on_schedule_then_abandoned(
    env: tuple[SimServer, PayPalGateway, Shop, str], client: httpx.AsyncClient
) -> None:
    _, gw, shop, _ = env
    gw.channel("pp").return_probability = 0.0
    shop.hook_status = 503
    order_id = await create(client, env)
    gw.buyer_visits("pp", order_id)
    assert await gw.wait_notifies(PATIENCE_S)
    times = [t for t, _, _ in shop.hooks]
    assert len(times) == 1 + len(DELAYS)
    for gap, delay in zip([b - a for a, b in zip(times, times[1:], strict=False)], DELAYS, strict=True):
        assert delay <= gap < delay + 0.5
    assert len({h["paypal-transmission-id"] for _, _, h in shop.hooks}) == 3  # each try is a new transmission
    [truth] = gw.ground_truth()
    assert (truth.callback_sent, truth.callback_acknowledged, [a.status_code for a in truth.attempts]) == (
        True, False, [503, 503, 503])
