"""The Stripe probes over real HTTP against the simulated PaymentIntents API: every fault maps to its probe
outcome, test intents are created at Stripe's minimum and always cancelled (also when the check fails midway),
and the secret key never appears in a result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
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
from monitor.probes.stripe import MAX_PENDING, SENTINEL, SWEEP_AGE, StripeAdapter
from monitor.secret import Redactor
from monitor.sim.server import AppServer, SimServer
from monitor.sim.stripe import StripeChannel, StripeGateway

KEY = "sk_test_51ProbeKeyAbCdEfGh0123456789"
PROBES = ("query", "test_order")


def channel(endpoint: str, key: str = KEY, timeout: str = "2s", **test_order: Any) -> ChannelConfig:
    return ChannelConfig.model_validate({
        "id": "stripe", "kind": "stripe", "weight": 10, "endpoint": endpoint, "credentials": {"secret_key": key},
        "probes": {"query": {"every": "30s", "timeout": timeout},
                   "test_order": {"every": "5m", "timeout": timeout, **test_order}},
    })


class TamperingGateway(StripeGateway):
    """The simulator, with a create answer that lacks the client_secret or a cancel that fails, on demand."""

    drop_secret = False
    break_cancel = False
    fail_after_create = False  # the intent is made, then the answer is a 500 (which Stripe keeps for the key)

    def _create(self, request: Request, channel: StripeChannel, params: dict[str, Any]) -> Response:
        reply = super()._create(request, channel, params)
        if self.fail_after_create:
            return Response(status_code=500)
        if not self.drop_secret:
            return reply
        body = json.loads(bytes(reply.body))
        del body["client_secret"]
        return Response(json.dumps(body), media_type="application/json")

    def _do_cancel(self, request: Request, channel: StripeChannel, params: dict[str, Any]) -> Response:
        return Response(status_code=500) if self.break_cancel else super()._do_cancel(request, channel, params)


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimServer, TamperingGateway]]:
    async with SimServer() as server:
        gw = TamperingGateway()
        gw.add_channel("stripe", api_key=KEY)
        server.add_gateway(gw)
        yield server, gw


@pytest.fixture
async def ctx(clock: FixedClock) -> AsyncIterator[ProbeContext]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield ProbeContext(client, clock, Redactor([KEY]))


def statuses(gw: StripeGateway) -> list[str]:
    return [pi.status for pi in gw.channel("stripe").intents.values()]


def test_registered_by_kind() -> None:
    assert ADAPTERS["stripe"] is StripeAdapter
    assert StripeAdapter.supports == PROBES


def test_missing_key_is_a_config_problem() -> None:
    cfg = ChannelConfig.model_validate({"id": "x", "kind": "stripe", "weight": 1, "endpoint": "http://127.0.0.1:1/",
                                        "credentials": {"publishable_key": "pk_test_x"}})
    with pytest.raises(ValueError, match="needs credentials secret_key"):
        StripeAdapter(cfg)


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize(
    ("faults", "key", "outcome", "code"),
    [
        pytest.param({}, KEY, "ok", None, id="healthy"),
        pytest.param({"error_rate": 1.0}, KEY, "http_error", "500", id="error"),
        pytest.param({"hang_rate": 1.0}, KEY, "timeout", None, id="hang"),
        pytest.param({"bad_json_rate": 1.0}, KEY, "bad_response", None, id="bad_json"),
        pytest.param({"maintenance_rate": 1.0}, KEY, "maintenance", "api_error", id="maintenance"),
        pytest.param({}, "sk_test_51WrongKeyZyXwVu9876543210", "business_error", "invalid_api_key", id="wrong_key"),
    ],
)
async def test_outcomes(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext, probe: str,
                        faults: dict[str, Any], key: str, outcome: str, code: str | None) -> None:
    server, gw = sim
    gw.faults("stripe").update(**faults)
    timeout = "0.3s" if "hang_rate" in faults else "2s"
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"), key, timeout)), "stripe", probe, ctx)
    ok_code = {"query": "resource_missing", "test_order": "requires_payment_method"}[probe]
    expected = code if outcome != "ok" else ok_code
    assert (result.outcome, result.code) == (outcome, expected), result.detail
    assert KEY not in result.detail and KEY[-4:] not in result.detail and key[-4:] not in result.detail
    if outcome == "timeout":  # cut by the probe's own 0.3 s deadline (waiting the hang out would be HTTP 504)
        assert "no complete answer within 0." in result.detail, result.detail
    # Nothing is left open: a healthy test_order cancels its intent, a failed create made none.
    assert statuses(gw) == (["canceled"] if (outcome, probe) == ("ok", "test_order") else [])


async def test_query_finds_the_last_test_intent(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    adapter = StripeAdapter(channel(server.endpoint("stripe").rstrip("/")))
    first = await run_probe(adapter, "stripe", "query", ctx)
    assert (first.outcome, first.code) == ("ok", "resource_missing") and SENTINEL in first.detail
    created = await run_probe(adapter, "stripe", "test_order", ctx)
    assert created.outcome == "ok" and created.detail.endswith("cancelled")
    found = await run_probe(adapter, "stripe", "query", ctx)
    assert (found.outcome, found.code) == ("ok", "canceled")
    assert adapter.last_intent is not None and adapter.last_intent in found.detail


@pytest.mark.parametrize(("amount", "minor"), [("0.01", 50), ("2.00", 200)])
async def test_amount_is_at_least_stripes_minimum(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext,
                                                  amount: str, minor: int) -> None:
    server, gw = sim
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"), amount=amount)), "stripe",
                             "test_order", ctx)
    assert result.outcome == "ok", result.detail
    (intent,) = gw.channel("stripe").intents.values()
    assert (intent.amount, intent.currency) == (minor, "cny")


async def test_close_false_leaves_the_intent(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"), close=False)), "stripe", "test_order",
                             ctx)
    assert result.outcome == "ok" and "left open" in result.detail
    assert statuses(gw) == ["requires_payment_method"]


async def test_a_check_failing_midway_still_cancels(sim: tuple[SimServer, TamperingGateway],
                                                    ctx: ProbeContext) -> None:
    server, gw = sim
    gw.drop_secret = True
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"))), "stripe", "test_order", ctx)
    assert result.outcome == "bad_response" and "client_secret" in result.detail
    assert statuses(gw) == ["canceled"]


async def test_a_failed_cancel_is_the_outcome(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    gw.break_cancel = True
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"))), "stripe", "test_order", ctx)
    assert (result.outcome, result.code) == ("http_error", "500")
    assert "created intent" in result.detail and "cancel failed" in result.detail
    gw.drop_secret = True  # both fail: the check's outcome wins, the cancel is named
    result = await run_probe(StripeAdapter(channel(server.endpoint("stripe"))), "stripe", "test_order", ctx)
    assert result.outcome == "bad_response" and "cancel failed" in result.detail


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    [
        (400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid", "message": "bad"}},
         "business_error", "parameter_invalid"),
        (429, {"error": {"type": "rate_limit_error", "message": "Too many requests"}}, "business_error",
         "rate_limit_error"),
        (404, "<html>Not Found</html>", "http_error", "404"),
        (502, {"error": {"type": "api_error", "message": "bad gateway"}}, "http_error", "502"),
        (200, {"object": "list", "data": []}, "bad_response", None),
        (200, {"object": "payment_intent", "id": "pi_other", "status": "succeeded"}, "bad_response", None),
        (200, {"object": "payment_intent", "id": SENTINEL, "status": "succeeded"}, "ok", "succeeded"),
    ],
)
async def test_answers_the_simulator_does_not_give(ctx: ProbeContext, status: int, body: Any, outcome: str,
                                                   code: str | None) -> None:
    async def retrieve(request: Request) -> Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(text, status_code=status, media_type="application/json")

    async with AppServer(Starlette(routes=[Route("/v1/payment_intents/{id}", retrieve)])) as server:
        result = await run_probe(StripeAdapter(channel(server.base_url + "/")), "stripe", "query", ctx)
    assert (result.outcome, result.code) == (outcome, code), result.detail


async def test_unsupported_probe_type(ctx: ProbeContext) -> None:
    result = await run_probe(StripeAdapter(channel("http://127.0.0.1:1/")), "stripe", "balance", ctx)
    assert result.outcome == "bad_response" and "not supported" in result.detail


# --- no intent is left open, even when the create's answer is lost ----------------------------------------


def by_status(gw: StripeGateway) -> dict[str, str]:
    return {pi.id: pi.status for pi in gw.channel("stripe").intents.values()}


async def test_a_create_whose_answer_is_lost_is_found_and_cancelled(sim: tuple[SimServer, TamperingGateway],
                                                                   ctx: ProbeContext) -> None:
    server, gw = sim
    gw.channel("stripe").create_reply_delay_s = 30.0  # the intent exists; its answer comes after the deadline
    adapter = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s"))
    result = await run_probe(adapter, "stripe", "test_order", ctx)
    assert result.outcome == "timeout", result.detail  # honest: the create did time out
    (intent,) = gw.channel("stripe").intents.values()
    assert intent.status == "canceled" and intent.cancellation_reason == "abandoned"
    assert f"probe intent {intent.id} found by its idempotency key and cancelled" in result.detail
    assert intent.metadata["paymon_channel"] == "stripe" and len(intent.metadata["paymon_probe"]) == 24
    assert adapter.pending == {}


async def test_a_cleanup_the_probe_could_not_finish_is_done_by_the_next_run(
        sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    gw.channel("stripe").create_reply_delay_s = 30.0
    gw.break_cancel = True  # found again, but Stripe fails the cancel: the cleanup waits for the next run
    adapter = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s"))
    first = await run_probe(adapter, "stripe", "test_order", ctx)
    assert first.outcome == "timeout" and "cleanup pending" in first.detail, first.detail
    [left] = by_status(gw)
    assert by_status(gw) == {left: "requires_payment_method"} and len(adapter.pending) == 1

    gw.channel("stripe").create_reply_delay_s = 0.0
    gw.break_cancel = False
    second = await run_probe(adapter, "stripe", "test_order", ctx)
    assert second.outcome == "ok", second.detail
    assert f"probe intent {left} found by its idempotency key and cancelled" in second.detail
    assert set(by_status(gw).values()) == {"canceled"} and len(by_status(gw)) == 2
    assert adapter.pending == {}


async def test_an_intent_cancelled_meanwhile_is_not_pending_forever(sim: tuple[SimServer, TamperingGateway],
                                                                   ctx: ProbeContext) -> None:
    """The replayed create is the first answer as it was (requires_payment_method): the intent's state now
    decides."""
    server, gw = sim
    gw.channel("stripe").create_reply_delay_s = 30.0
    gw.break_cancel = True
    adapter = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s"))
    await run_probe(adapter, "stripe", "test_order", ctx)
    (intent,) = gw.channel("stripe").intents.values()
    intent.status = "canceled"  # say the dashboard user cancelled it
    gw.channel("stripe").create_reply_delay_s = 0.0
    gw.break_cancel = False
    result = await run_probe(adapter, "stripe", "test_order", ctx)
    assert result.outcome == "ok" and f"probe intent {intent.id} found" in result.detail, result.detail
    assert adapter.pending == {}


async def test_a_create_answered_500_after_it_ran_is_found_by_search(sim: tuple[SimServer, TamperingGateway],
                                                                     ctx: ProbeContext) -> None:
    """Stripe replays the 500 for the same key, so the intent is found by its paymon_probe metadata."""
    server, gw = sim
    gw.fail_after_create = True
    adapter = StripeAdapter(channel(server.endpoint("stripe")))
    result = await run_probe(adapter, "stripe", "test_order", ctx)
    assert (result.outcome, result.code) == ("http_error", "500"), result.detail
    (intent,) = gw.channel("stripe").intents.values()
    assert intent.status == "canceled", result.detail
    assert f"probe intent {intent.id} found by search and cancelled" in result.detail
    assert adapter.pending == {}


async def test_close_false_never_cleans_up(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    gw.channel("stripe").create_reply_delay_s = 30.0
    adapter = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s", close=False))
    result = await run_probe(adapter, "stripe", "test_order", ctx)
    assert result.outcome == "timeout" and "found" not in result.detail
    assert list(by_status(gw).values()) == ["requires_payment_method"] and adapter.pending == {}


async def test_a_restart_sweeps_probe_intents_left_open(ctx: ProbeContext, clock: FixedClock) -> None:
    """A new adapter (a restarted daemon, a ``paymon once`` under cron) has no memory of pending cleanups: its
    first test_order searches Stripe for this channel's open probe intents old enough not to be another probe's
    that is still running, and cancels them; the shop's own intents and other channels' are left alone."""
    async with SimServer() as server:
        gw = TamperingGateway(clock=clock)
        gw.add_channel("stripe", api_key=KEY)
        server.add_gateway(gw)
        shop = await shop_intent(server, gw)
        gw.channel("stripe").create_reply_delay_s = 30.0
        gw.break_cancel = True
        before = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s"))
        await run_probe(before, "stripe", "test_order", ctx)  # leaves one open, pending in `before` only
        [_, leaked] = by_status(gw)
        clock.advance(SWEEP_AGE)
        young = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.3s"))
        await run_probe(young, "stripe", "test_order", ctx)  # its own create leaves a second one open
        [_, _, fresh] = by_status(gw)
        gw.channel("stripe").create_reply_delay_s = 0.0
        gw.break_cancel = False
        clock.advance(1)
        after = StripeAdapter(channel(server.endpoint("stripe"), timeout="2s"))
        result = await run_probe(after, "stripe", "test_order", ctx)
        assert result.outcome == "ok", result.detail
        assert f"probe intent {leaked} left open before a restart: now canceled" in result.detail
        states = by_status(gw)
        assert states[leaked] == "canceled" and states[shop] == "requires_payment_method"
        assert states[fresh] == "requires_payment_method"  # younger than SWEEP_AGE: maybe another's probe
        again = await run_probe(after, "stripe", "test_order", ctx)  # one sweep per adapter life
        assert "before a restart" not in again.detail


async def shop_intent(server: SimServer, gw: StripeGateway) -> str:
    """An intent the shop made (no paymon metadata), through the API."""
    async with httpx.AsyncClient(trust_env=False) as client:
        reply = await client.post(server.endpoint("stripe") + "v1/payment_intents",
                                  data={"amount": "1000", "currency": "cny", "metadata[order_id]": "A1"},
                                  headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200
    return str(reply.json()["id"])


async def test_pending_cleanups_are_bounded(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext) -> None:
    server, gw = sim
    gw.faults("stripe").update(hang_rate=1.0)
    adapter = StripeAdapter(channel(server.endpoint("stripe"), timeout="0.05s"))
    for _ in range(MAX_PENDING + 2):
        result = await run_probe(adapter, "stripe", "test_order", ctx)
        assert result.outcome == "timeout"
    assert len(adapter.pending) == MAX_PENDING


# --- currency ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "amount", "minor", "shown"),
    [
        pytest.param(None, "0.01", 50, "0.50 cny", id="default-cny-at-minimum"),
        pytest.param("USD", "1.234", 124, "1.24 usd", id="usd-rounded-up"),
        pytest.param("jpy", "0.01", 50, "50 jpy", id="jpy-zero-decimal-minimum"),
        pytest.param("JPY", "120.4", 121, "121 jpy", id="jpy-whole-yen-up"),
    ],
)
async def test_the_configured_currency_is_sent(sim: tuple[SimServer, TamperingGateway], ctx: ProbeContext,
                                               currency: str | None, amount: str, minor: int, shown: str) -> None:
    server, gw = sim
    cfg = channel(server.endpoint("stripe"), amount=amount)
    if currency is not None:
        cfg = ChannelConfig.model_validate({**cfg.model_dump(), "credentials": {"secret_key": KEY},
                                            "currency": currency})
    result = await run_probe(StripeAdapter(cfg), "stripe", "test_order", ctx)
    assert result.outcome == "ok" and f"for {shown}," in result.detail, result.detail
    (intent,) = gw.channel("stripe").intents.values()
    assert (intent.amount, intent.currency) == (minor, shown.split()[1])
