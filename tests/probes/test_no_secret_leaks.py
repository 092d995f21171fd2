"""Every adapter, run by the real daemon against the simulator, healthy and failing: no credential value reaches
the stored probe details, the logs or the metrics (epay even echoes its key back)."""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from monitor.cli import build_app, setup_logging
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.protocols.alipay import generate_private_key_pem, public_key_pem
from monitor.sim.alipay import AlipayGateway
from monitor.sim.epay_v2 import EpayV2Gateway
from monitor.sim.epusdt import EpusdtGateway
from monitor.sim.paypal import PayPalGateway
from monitor.sim.server import SimServer
from monitor.sim.stripe import StripeGateway
from monitor.sim.wxpay import WxpayGateway

APP_KEY = generate_private_key_pem()
PLATFORM_KEY = generate_private_key_pem()
SECRETS = {
    "EPAY_KEY": "epay-md5-key-9f8e7d6c5b4a",
    "WX_KEY": "wxpay-api-key-0123456789abcdef0123",
    "EPUSDT_TOKEN": "epusdt-token-5a4b3c2d1e",
    "STRIPE_KEY": "sk_test_leakcheck1234567890abcd",
    "PAYPAL_SECRET": "paypal-secret-qwertyuiop123",
    "APP_PRIVATE_KEY": APP_KEY,
}


def body(pem: str) -> str:
    """A distinctive piece of a PEM key's base64 body."""
    return "".join(pem.strip().splitlines()[1:-1])[100:160]


@pytest.mark.parametrize("fault", [{}, {"maintenance_rate": 1.0}, {"error_rate": 1.0}, {"bad_json_rate": 1.0}])
async def test_no_credential_in_details_logs_or_metrics(tmp_path: Path, fault: dict[str, float]) -> None:
    async with SimServer() as sim:
        sim.add_channel("epay", pid=1001, key=SECRETS["EPAY_KEY"])
        v2 = sim.add_gateway(EpayV2Gateway())
        v2.add_channel("epayv2", pid=1002, merchant_public_key=public_key_pem(APP_KEY),
                       platform_private_key=PLATFORM_KEY)
        ali = sim.add_gateway(AlipayGateway())
        ali.add_channel("ali", app_id="2021000000000001", app_public_key=public_key_pem(APP_KEY),
                        platform_private_key=PLATFORM_KEY)
        wx = sim.add_gateway(WxpayGateway())
        wx.add_channel("wx", appid="wx1234567890", mch_id="10000100", key=SECRETS["WX_KEY"])
        sim.add_gateway(EpusdtGateway()).add_channel("usdt", token=SECRETS["EPUSDT_TOKEN"])
        sim.add_gateway(StripeGateway()).add_channel("stripe", api_key=SECRETS["STRIPE_KEY"])
        sim.add_gateway(PayPalGateway()).add_channel("paypal", client_id="client-1",
                                                     client_secret=SECRETS["PAYPAL_SECRET"])
        for ch in ("epay", "epayv2", "ali", "wx", "usdt", "stripe", "paypal"):
            sim.faults(ch).update(**fault)
        probes = "probes: {query: {timeout: 2s}, test_order: {timeout: 2s}, balance: {timeout: 2s}}"
        short = "probes: {query: {timeout: 2s}, test_order: {timeout: 2s}}"
        platform_pub = public_key_pem(PLATFORM_KEY).replace("\n", "\\n")
        app_key = "${APP_PRIVATE_KEY}"
        channels = f"""channels:
  - {{id: epay, kind: epay, weight: 1, endpoint: "{sim.endpoint('epay')}",
     credentials: {{pid: "1001", key: "${{EPAY_KEY}}"}}, {probes}}}
  - {{id: epayv2, kind: epay_v2, weight: 1, endpoint: "{sim.endpoint('epayv2')}",
     credentials: {{pid: "1002", private_key: "{app_key}", platform_public_key: "{platform_pub}"}}, {probes}}}
  - {{id: ali, kind: alipay_f2f, weight: 1, endpoint: "{sim.endpoint('ali')}",
     credentials: {{app_id: "2021000000000001", private_key: "{app_key}", alipay_public_key: "{platform_pub}"}},
     {short}}}
  - {{id: wx, kind: wxpay_v2, weight: 1, endpoint: "{sim.endpoint('wx')}",
     credentials: {{appid: wx1234567890, mch_id: "10000100", key: "${{WX_KEY}}"}}, {short}}}
  - {{id: usdt, kind: epusdt, weight: 1, endpoint: "{sim.endpoint('usdt')}",
     credentials: {{token: "${{EPUSDT_TOKEN}}"}}, {short}}}
  - {{id: stripe, kind: stripe, weight: 1, endpoint: "{sim.endpoint('stripe')}",
     credentials: {{secret_key: "${{STRIPE_KEY}}"}}, {short}}}
  - {{id: paypal, kind: paypal, weight: 1, endpoint: "{sim.endpoint('paypal')}",
     credentials: {{client_id: client-1, client_secret: "${{PAYPAL_SECRET}}"}}, {short}}}
"""
        (tmp_path / "channels.yaml").write_text(channels, encoding="utf-8")
        (tmp_path / "monitor.yaml").write_text('storage: {url: "sqlite:///paymon.db"}\n', encoding="utf-8")
        cfg = load_config(tmp_path / "monitor.yaml", env=SECRETS)
        app = build_app(cfg)
        logs = io.StringIO()
        setup_logging(cfg.redactor, verbose=True, stream=logs)  # paymon's own logging, at its most verbose
        try:
            async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics) as daemon:
                results = await daemon.probe_all()
                results += await daemon.probe_all()  # the second round queries the test orders it made
                logging.getLogger("monitor.test").warning("probe round done: %s", results[0].detail)
        finally:
            root = logging.getLogger()
            for handler in [h for h in root.handlers if getattr(h, "_paymon", False)]:
                root.removeHandler(handler)
        metrics = generate_latest(app.metrics.registry).decode()
        app.pipeline.close()
        app.store.close()

    assert len(results) == 2 * (3 * 2 + 2 * 5)
    outcomes = {r.outcome for r in results}
    expected = {"maintenance_rate": {"maintenance"}, "error_rate": {"http_error"}}.get(next(iter(fault), ""))
    if expected is not None:
        assert outcomes == expected, sorted((r.channel, r.probe, r.outcome, r.detail) for r in results)
    elif not fault:
        assert outcomes == {"ok"}, sorted((r.channel, r.probe, r.outcome, r.detail) for r in results
                                          if r.outcome != "ok")
    db = sqlite3.connect(tmp_path / "paymon.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert "probe_results" in dump and len(dump) > 1000
    assert "probe round done" in logs.getvalue()  # the scan read real log output
    for name, value in SECRETS.items():
        needle = body(value) if "PRIVATE" in name else value
        for where, text in (("database", dump), ("logs", logs.getvalue()), ("metrics", metrics)):
            assert needle not in text, f"{name} leaked into {where}"
