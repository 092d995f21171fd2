"""The epay V1 querier over real HTTP against the simulator, on both server flavours: paid / unpaid / unknown ids
in one batch, the newest-page shortcut and its per-id fallback, faults as ProbeFailure outcomes, and notify replay
of a lost order to the simulated shop. The merchant key and the notify signature never appear in a detail."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import monitor.protocols.epay as v1
from monitor.clock import FixedClock
from monitor.config import ChannelConfig
from monitor.probes.base import MAX_BODY, ProbeContext, ProbeFailure
from monitor.reconcile import QUERIERS, ChannelOrder, Replayer
from monitor.reconcile.epay import PAGE, EpayQuerier
from monitor.secret import Redactor
from monitor.sim import AppServer, Faults, Shop, SimServer

KEY = "reconcile-epay-md5-key-4b2e"
PID = "1001"
FLAVOURS = ("new", "old")
LOST = Faults(pay_probability=1.0, callback_drop_rate=1.0)  # every buyer pays, no notify is ever sent


def channel(endpoint: str, *, key: str = KEY, timeout: str = "2s", tz: str | None = None,
            creds: dict[str, str] | None = None) -> ChannelConfig:
    doc: dict[str, Any] = {
        "id": "epay-main", "kind": "epay", "weight": 10, "endpoint": endpoint,
        "credentials": creds if creds is not None else {"pid": PID, "key": key},
        "probes": {"query": {"timeout": timeout}},
    }
    if tz is not None:
        doc["timezone"] = tz
    return ChannelConfig.model_validate(doc)


@dataclass
class Env:
    sim: SimServer
    ctx: ProbeContext
    clock: FixedClock
    #: ``act`` of every api.php request the querier made, in order.
    acts: list[str] = field(default_factory=list)

    def querier(self, flavour: str, **kw: Any) -> EpayQuerier:
        return EpayQuerier(channel(self.sim.endpoint(flavour), **kw))

    async def open(self, flavour: str, out_trade_no: str, money: str, *, param: str | None = None) -> str:
        """Open an order through mapi.php as a shop would (never counted in ``acts``); its epay trade_no."""
        params = {"pid": PID, "type": "alipay", "out_trade_no": out_trade_no, "notify_url": "http://127.0.0.1:9/n",
                  "return_url": "http://127.0.0.1:9/r", "name": out_trade_no, "money": money,
                  "clientip": "127.0.0.1", "device": "pc"}
        if param is not None:
            params["param"] = param
        params["sign"] = v1.sign_md5(params, KEY)
        params["sign_type"] = "MD5"
        async with httpx.AsyncClient() as client:
            reply = await client.post(self.sim.endpoint(flavour) + "mapi.php", data=params)
        trade_no = reply.json()["trade_no"]
        assert isinstance(trade_no, str)
        return trade_no


@pytest.fixture
async def env(clock: FixedClock) -> AsyncIterator[Env]:
    acts: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/api.php"):
            acts.append(request.url.params["act"])

    async with SimServer(clock=clock) as sim, httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        for flavour in FLAVOURS:
            sim.gateway.add_channel(flavour, PID, KEY, Faults(pay_probability=1.0, callback_drop_rate=1.0),
                                    flavour=flavour)
        yield Env(sim, ProbeContext(client, clock, Redactor([KEY])), clock, acts)


def test_registered_by_kind_and_replays() -> None:
    querier = EpayQuerier(channel("http://127.0.0.1:1/"))
    assert QUERIERS["epay"] is EpayQuerier
    assert (querier.kind, querier.batch) == ("epay", PAGE)
    assert isinstance(querier, Replayer)


@pytest.mark.parametrize(("creds", "message"), [({"pid": PID}, "needs credentials pid and key"),
                                                ({"key": KEY}, "needs credentials pid and key")])
def test_missing_credentials_are_a_config_problem(creds: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpayQuerier(channel("http://127.0.0.1:1/", creds=creds))


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_paid_unpaid_and_unknown_in_one_batch(env: Env, flavour: str) -> None:
    paid_no = await env.open(flavour, "PAIDORDER0000001", "10.50")
    await env.open(flavour, "UNPAIDORDER00002", "0.01")
    env.clock.advance(timedelta(seconds=95))
    assert env.sim.gateway.buyer_visits(flavour, paid_no)
    paid_at = env.clock.now()
    env.clock.advance(timedelta(minutes=10))

    answers = await env.querier(flavour).lookup(["PAIDORDER0000001", "UNPAIDORDER00002", "NOSUCHORDER00003"], env.ctx)

    assert answers["PAIDORDER0000001"] == ChannelOrder(
        "PAIDORDER0000001", found=True, state="paid", paid_at=paid_at, trade_no=paid_no, amount=Decimal("10.50"),
        status="1", fields={"type": "alipay", "name": "PAIDORDER0000001", "money": "10.50", "trade_no": paid_no})
    assert answers["PAIDORDER0000001"].paid_at == datetime(2026, 11, 26, 3, 1, 35, tzinfo=UTC)
    unpaid = answers["UNPAIDORDER00002"]
    assert (unpaid.found, unpaid.paid, unpaid.paid_at, unpaid.amount, unpaid.status) == (
        True, False, None, Decimal("0.01"), "0")
    assert answers["NOSUCHORDER00003"] == ChannelOrder("NOSUCHORDER00003", found=False)
    # Both known orders came from the newest page; only the unknown id was asked on its own.
    assert env.acts == ["orders", "order"]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_one_id_is_asked_directly(env: Env, flavour: str) -> None:
    trade_no = await env.open(flavour, "ONLYORDER0000001", "25.5")
    env.sim.gateway.buyer_visits(flavour, trade_no)
    (answer,) = (await env.querier(flavour).lookup(["ONLYORDER0000001", "ONLYORDER0000001"], env.ctx)).values()
    assert (answer.paid, answer.amount, answer.trade_no) == (True, Decimal("25.50"), trade_no)
    assert env.acts == ["order"]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_orders_older_than_the_page_are_asked_one_by_one(env: Env, flavour: str) -> None:
    """EP-old ignores offset: the querier never pages, it asks for what the newest page does not show."""
    oldest = await env.open(flavour, "OLDEST0000000000", "9.9")
    env.sim.gateway.buyer_visits(flavour, oldest)
    for i in range(PAGE + 2):
        env.clock.advance(timedelta(seconds=1))  # trade_no starts with the second: the page order is fixed
        await env.open(flavour, f"LATER{i:011d}", "1")
    answers = await env.querier(flavour).lookup(["OLDEST0000000000", f"LATER{PAGE + 1:011d}", "LATER00000000000"],
                                                env.ctx)
    assert answers["OLDEST0000000000"].paid and answers["OLDEST0000000000"].amount == Decimal("9.90")
    assert answers[f"LATER{PAGE + 1:011d}"].found and not answers[f"LATER{PAGE + 1:011d}"].paid
    assert answers["LATER00000000000"].found and not answers["LATER00000000000"].paid
    assert env.acts == ["orders", "order", "order"]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_merchant_without_orders(env: Env, flavour: str) -> None:
    """An empty page is HTTP 500 with an empty body: the per-id queries decide, and say 'not found'."""
    answers = await env.querier(flavour).lookup(["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB"], env.ctx)
    assert answers == {i: ChannelOrder(i, found=False) for i in ("AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB")}
    assert env.acts == ["orders", "order", "order"]


async def test_endtime_is_read_in_the_channel_timezone(env: Env) -> None:
    trade_no = await env.open("new", "TZORDER000000001", "1")
    env.sim.gateway.buyer_visits("new", trade_no)
    beijing = await env.querier("new").lookup(["TZORDER000000001"], env.ctx)
    utc_host = await env.querier("new", tz="UTC").lookup(["TZORDER000000001"], env.ctx)
    assert beijing["TZORDER000000001"].paid_at == env.clock.now()
    assert utc_host["TZORDER000000001"].paid_at == env.clock.now() + timedelta(hours=8)


FAULTS: list[tuple[str, dict[str, Any], str, dict[str, str | None]]] = [
    ("error", {"error_rate": 1.0}, "http_error", {"new": "500", "old": "500"}),
    ("maintenance", {"maintenance_rate": 1.0}, "maintenance", {"new": "-1", "old": "-1"}),
    ("bad_json", {"bad_json_rate": 1.0}, "bad_response", {"new": None, "old": None}),
    ("hang", {"hang_rate": 1.0}, "timeout", {"new": None, "old": None}),
    ("wrong_key", {}, "business_error", {"new": "-3", "old": "-2"}),
]


@pytest.mark.parametrize("ids", [["ABCDEFGH12345678"], ["ABCDEFGH12345678", "ZYXWVUTS87654321"]])
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("case", "faults", "outcome", "codes"), FAULTS, ids=[c[0] for c in FAULTS])
async def test_faults_are_probe_failures(env: Env, flavour: str, ids: list[str], case: str, faults: dict[str, Any],
                                         outcome: str, codes: dict[str, str | None]) -> None:
    await env.open(flavour, "ABCDEFGH12345678", "1")
    env.sim.faults(flavour).update(**faults)
    querier = env.querier(flavour, key="wrong-key-wrong-key" if case == "wrong_key" else KEY,
                          timeout="0.3s" if case == "hang" else "2s")
    with pytest.raises(ProbeFailure) as failure:
        await querier.lookup(ids, env.ctx)
    assert (failure.value.outcome, failure.value.code) == (outcome, codes[flavour]), failure.value.detail
    assert failure.value.detail.startswith(("act=order:", "act=orders:"))
    assert KEY not in failure.value.detail
    if case == "maintenance":
        assert "维护" in failure.value.detail


async def test_answers_only_real_servers_give(env: Env) -> None:
    """Stub answers: numbers as strings, statuses 2/3/4, an order listed three times (the paid row wins), odd or
    missing endtimes and bad fields."""
    page = {"code": "1", "count": 5, "data": [
        {"trade_no": "2026112611000011111", "out_trade_no": "DUP", "status": "0", "money": "5.00",
         "endtime": None},
        {"trade_no": "2026112611000000001", "out_trade_no": "DUP", "status": "1", "money": "5.00",
         "endtime": "2026-11-26 11:00:00", "type": 1, "param": ""},
        {"trade_no": "2026112611000000002", "out_trade_no": "REFUNDED", "status": 2, "money": 7,
         "endtime": "2026-11-26 10:00:00"},
        {"trade_no": "2026112611000000003", "out_trade_no": "PREAUTH", "status": "4", "money": "1.00",
         "endtime": "not a time"},
        {"trade_no": "2026112611000000004", "out_trade_no": "FROZEN", "status": 3, "money": "",
         "endtime": "2026-11-26 12:00:00", "key": KEY},
        {"trade_no": "2026112611000000000", "out_trade_no": "DUP", "status": 0, "money": "5.00"},
        {"trade_no": "2026112611000000005", "out_trade_no": "NOENDTIME", "status": 1, "money": "2.00",
         "endtime": None},
        "not a row",
    ]}
    singles = {
        "ODDSTATUS": {"code": 1, "out_trade_no": "ODDSTATUS", "status": "paid"},
        "ODDMONEY": {"code": 1, "out_trade_no": "ODDMONEY", "status": 1, "money": "lots"},
        "MISMATCH": {"code": 1, "out_trade_no": "SOMETHINGELSE", "status": 1},
        "OTHERERROR": {"code": -1, "msg": "查询失败"},
        "NOCODE": {"msg": "?"},
    }

    async def api(request: Request) -> Response:
        if request.query_params["act"] == "orders":
            return PlainTextResponse(json.dumps(page), media_type="text/html")
        return PlainTextResponse(json.dumps(singles[request.query_params["out_trade_no"]]), media_type="text/html")

    async with AppServer(Starlette(routes=[Route("/api.php", api)])) as server:
        querier = EpayQuerier(channel(server.base_url))  # no trailing slash
        answers = await querier.lookup(["DUP", "REFUNDED", "PREAUTH", "FROZEN", "NOENDTIME"], env.ctx)
        failures = []
        for order_id in singles:
            with pytest.raises(ProbeFailure) as failure:
                await querier.lookup([order_id], env.ctx)
            failures.append((failure.value.outcome, failure.value.code))
    beijing_11 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    # only a paid order has a pay time, and only one epay gave: refunded, held (3 frozen, 4 pre-auth) have none
    assert [(a.state, a.paid, a.status, a.paid_at, a.amount) for a in answers.values()] == [
        ("paid", True, "1", beijing_11, Decimal("5.00")),
        ("refunded", False, "2", None, Decimal("7")),
        ("held", False, "4", None, Decimal("1.00")),
        ("held", False, "3", None, None),
        ("paid", True, "1", None, Decimal("2.00")),
    ]
    assert answers["DUP"].fields == {"type": "1", "money": "5.00", "trade_no": "2026112611000000001"}
    assert all(KEY not in str(a) for a in answers.values())
    assert failures == [("bad_response", None), ("bad_response", None), ("bad_response", None),
                        ("business_error", "-1"), ("bad_response", None)]


# ---- replay ---------------------------------------------------------------------------------------------


def read_log(path: Path, order_id: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["order_id"] == order_id]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_replay_completes_a_lost_order(env: Env, tmp_path: Path, flavour: str) -> None:
    log = tmp_path / "orders.jsonl"
    async with Shop(log, clock=env.clock) as shop:
        shop.add_channel(flavour, endpoint=env.sim.endpoint(flavour), kind="epay", pid=PID, key=KEY)
        order = await shop.place_order(flavour, "alipay", "10.00")
        assert order.trade_no is not None
        assert env.sim.gateway.buyer_visits(flavour, order.trade_no)
        assert await env.sim.wait_notifies(2)
        (truth,) = env.sim.ground_truth() if flavour == "new" else [
            t for t in env.sim.ground_truth() if t.channel == flavour]
        assert truth.paid and truth.callback_dropped and not truth.callback_sent
        assert shop.order(order.order_id).status == "wait_pay"  # type: ignore[union-attr]

        querier = env.querier(flavour)
        found = (await querier.lookup([order.order_id], env.ctx))[order.order_id]
        assert found.paid and found.amount == Decimal("10.00")
        result = await querier.replay(found, shop.notify_url, env.ctx)
        assert (result.status_code, result.acknowledged) == (200, True), result.detail
        assert "'success'" in result.detail and KEY not in result.detail

        again = await querier.replay(found, shop.notify_url, env.ctx)  # dujiaoka: already completed -> 500 fail
        assert (again.status_code, again.acknowledged) == (500, False)
        completed = shop.order(order.order_id)
        assert completed is not None and (completed.status, completed.trade_no) == ("completed", order.trade_no)
    events = read_log(log, order.order_id)
    received = [e for e in events if e["event"] == "callback_received"]
    assert received[0]["verified"] is True and received[0]["trade_no"] == order.trade_no
    assert [e["event"] for e in events].count("order_paid") == 1
    assert received[1].get("detail") == "already completed"


async def test_replay_sends_what_epay_sends(env: Env) -> None:
    """The exact wire form: GET, epay's curl headers, the signed params; the ack is a substring in any
    status; an echo of the URL in the body leaves neither key nor signature in the detail."""
    seen: list[Request] = []

    async def notify(request: Request) -> Response:
        seen.append(request)
        return PlainTextResponse(f"<p>SUCCESS</p> {request.query_params['sign']} {request.url}", status_code=500)

    order = ChannelOrder("SHOPORDER0000001", True, "paid", trade_no="2026112611000012345", amount=Decimal("10.5"),
                         status="1", fields={"type": "wxpay", "name": "VIP会员", "money": "10.50",
                                             "trade_no": "2026112611000012345", "param": "a b&c"})
    async with AppServer(Starlette(routes=[Route("/pay/yipay/notify_url", notify)])) as shop:
        result = await env.querier("new").replay(order, shop.base_url + "/pay/yipay/notify_url?x=1", env.ctx)
    (request,) = seen
    params = dict(request.query_params)
    sign = params["sign"]
    assert request.method == "GET" and request.headers["user-agent"] == v1.NOTIFY_HEADERS["User-Agent"]
    assert params == {"x": "1", "pid": PID, "trade_no": "2026112611000012345", "out_trade_no": "SHOPORDER0000001",
                      "type": "wxpay", "name": "VIP会员", "money": "10.5", "trade_status": "TRADE_SUCCESS",
                      "param": "a b&c", "sign": sign, "sign_type": "MD5"}
    assert v1.verify_md5({k: v for k, v in params.items() if k != "x"}, KEY)
    assert not v1.verify_md5(params, KEY)  # as with epay, the notify_url's own query is not signed
    assert (result.status_code, result.acknowledged) == (500, True)
    assert sign not in result.detail and KEY not in result.detail and "***" in result.detail


async def test_replay_does_not_follow_redirects(env: Env) -> None:
    async def notify(request: Request) -> Response:
        return RedirectResponse(f"https://shop.example/pay/yipay/notify_url?{request.url.query}", status_code=301)

    order = ChannelOrder("SHOPORDER0000001", True, "paid", status="1",
                         fields={"type": "alipay", "money": "1.00", "trade_no": "2026112611000012345"})
    async with AppServer(Starlette(routes=[Route("/n", notify)])) as shop:
        result = await env.querier("new").replay(order, shop.base_url + "/n", env.ctx)
    assert (result.status_code, result.acknowledged) == (301, False)
    assert "redirect to https://shop.example/pay/yipay/notify_url, not followed" in result.detail
    assert "sign" not in result.detail


async def test_replay_to_a_dead_or_bad_url_is_a_result(env: Env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    order = ChannelOrder("SHOPORDER0000001", True, "paid", status="1",
                         fields={"type": "alipay", "money": "1.00", "trade_no": "2026112611000012345"})
    querier = env.querier("new")
    sign = v1.notify_params(pid=PID, trade_no="2026112611000012345", out_trade_no="SHOPORDER0000001",
                            type="alipay", name="", money="1.00", key=KEY)["sign"]
    for url in (f"http://127.0.0.1:{port}/pay/yipay/notify_url", "not a url", "ftp://127.0.0.1/x"):
        result = await querier.replay(order, url, env.ctx)
        assert (result.status_code, result.acknowledged) == (None, False), url
        assert KEY not in result.detail and sign not in result.detail


@pytest.mark.parametrize("how", ["silent", "trickle"])
async def test_replay_has_a_deadline(env: Env, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A shop that never answers, or answers a byte at a time, costs the notify timeout and no more."""
    release = asyncio.Event()
    dripped = 0

    async def drip() -> AsyncIterator[bytes]:
        # a byte every 20 ms for 10 s, then the ack: a missing total deadline is a failure, not a hung test
        nonlocal dripped
        while not release.is_set() and dripped < 500:
            yield b" "
            dripped += 1
            await asyncio.sleep(0.02)
        yield b"success"

    async def slow(request: Request) -> Response:
        if how == "silent":
            await release.wait()
            return PlainTextResponse("success")
        return StreamingResponse(drip())

    monkeypatch.setattr(v1, "NOTIFY_TIMEOUT_S", 0.3)
    order = ChannelOrder("SHOPORDER0000001", True, "paid", status="1",
                         fields={"type": "alipay", "money": "1.00", "trade_no": "2026112611000012345"})
    async with AppServer(Starlette(routes=[Route("/n", slow)])) as shop:
        result = await asyncio.wait_for(env.querier("new").replay(order, shop.base_url + "/n", env.ctx), 60)
        release.set()
    assert (result.status_code, result.acknowledged) == (None, False)
    assert "0.3s" in result.detail or "Timeout" in result.detail
    # cut at the 0.3 s deadline: ~15 bytes, counted on the shop's side on the same event loop (loop time, which a
    # busy machine can only make fewer); a per-read timeout would have read all 500 and the ack
    assert dripped < 50


async def test_replay_reads_a_huge_answer_only_so_far(env: Env) -> None:
    async def huge(request: Request) -> Response:
        return PlainTextResponse("success" + "x" * (2 * MAX_BODY))

    order = ChannelOrder("SHOPORDER0000001", True, "paid", status="1",
                         fields={"type": "alipay", "money": "1.00", "trade_no": "2026112611000012345"})
    async with AppServer(Starlette(routes=[Route("/n", huge)])) as shop:
        result = await env.querier("new").replay(order, shop.base_url + "/n", env.ctx)
    assert (result.status_code, result.acknowledged) == (200, True)
    assert len(result.detail) < 120


@pytest.mark.parametrize(("order", "reason"), [
    (ChannelOrder("X", found=False), "not plainly paid"),
    (ChannelOrder("X", True, "unpaid", status="0"), "not plainly paid (status 0)"),
    (ChannelOrder("X", True, "refunded", status="2", fields={"type": "a", "money": "1", "trade_no": "1"}),
     "not plainly paid (status 2)"),
    (ChannelOrder("X", True, "paid", status="1", fields={"type": "alipay"}), "gave no trade_no, money"),
    (ChannelOrder("X", True, "paid", status="1", fields={"type": "a", "money": "lots", "trade_no": "1"}),
     "is not an amount"),
])
async def test_replay_refuses_what_it_must_not_send(env: Env, order: ChannelOrder, reason: str) -> None:
    result = await env.querier("new").replay(order, "http://127.0.0.1:9/never-called", env.ctx)
    assert (result.status_code, result.acknowledged) == (None, False)
    assert result.detail.startswith("not sent") and reason in result.detail
