"""The multi-gateway SimServer: dispatch by channel id, the /_sim control API, ground-truth export."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from monitor.sim.server import AppServer, SimServer
from tests.conftest import PATIENCE_S, wait_until

KEY = "server-test-key-123456"


async def test_control_api_changes_faults_over_http() -> None:
    async with SimServer() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.add_channel("main", pid=1001, key=KEY)
        listed = (await client.get("/_sim/channels")).json()
        assert [(c["id"], c["kind"], c["faults"]["error_rate"]) for c in listed] == [("main", "epay", 0.0)]
        r = await client.post("/_sim/channels/main/faults", json={"error_rate": 1.0, "latency_s": 0.01})
        assert r.status_code == 200 and r.json()["error_rate"] == 1.0
        assert sim.faults("main").error_rate == 1.0
        assert (await client.get("/main/api.php", params={"act": "query"})).status_code == 500
        bad = await client.post("/_sim/channels/main/faults", json={"wobble": 1})
        assert bad.status_code == 400 and "wobble" in bad.json()["error"]
        assert (await client.post("/_sim/channels/main/faults", json=[1])).status_code == 400
        assert (await client.get("/_sim/channels/nope/faults")).status_code == 404
        assert (await client.get("/nope/api.php")).status_code == 404


async def test_truth_export_and_reserved_ids() -> None:
    async with SimServer() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.add_channel("main", pid=1001, key=KEY)
        with pytest.raises(ValueError):
            sim.add_channel("main", pid=1002, key=KEY)
        with pytest.raises(ValueError):
            sim.add_channel("_sim", pid=1003, key=KEY)
        from monitor.protocols.epay import sign_md5

        params = {"pid": "1001", "type": "alipay", "out_trade_no": "T1", "notify_url": "http://127.0.0.1:9/n",
                  "name": "x", "money": "1.00", "clientip": "127.0.0.1"}
        params["sign"] = sign_md5(params, KEY)
        params["sign_type"] = "MD5"
        created = (await client.post("/main/mapi.php", data=params)).json()
        truth = (await client.get("/_sim/truth", params={"channel": "main"})).json()
        assert [(t["trade_no"], t["out_trade_no"], t["money"], t["paid"]) for t in truth] == [
            (created["trade_no"], "T1", "1.00", False)]
        assert (await client.get("/_sim/truth", params={"channel": "other"})).json() == []
        assert [t.out_trade_no for t in sim.ground_truth()] == ["T1"]


@pytest.mark.parametrize("answer", ["never", "too_late"])
async def test_stop_closes_every_connection_even_past_the_grace(answer: str) -> None:
    """A request still running when the graceful timeout ends is cancelled, and its connection is closed with it:
    no socket is left for the garbage collector (a ResourceWarning in whatever test runs then)."""
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if answer == "never":
            await asyncio.Event().wait()
        await release.wait()  # "too_late": answers only after the grace has passed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    srv = AppServer(app, graceful_timeout_s=0)
    await srv.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    server = srv._server
    assert server is not None
    assert await wait_until(lambda: bool(server.server_state.tasks))
    await srv.stop()
    release.set()
    assert server.server_state.connections == set()
    rest = await asyncio.wait_for(reader.read(), PATIENCE_S)  # the server closed its side: EOF, not a hang
    assert b"late" not in rest
    writer.close()
    await writer.wait_closed()
