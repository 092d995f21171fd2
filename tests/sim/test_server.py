"""The multi-gateway SimServer: dispatch by channel id, the /_sim control API, ground-truth export."""

from __future__ import annotations

import httpx
import pytest

from monitor.sim.server import SimServer

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
