"""Failing evaluation cycles are never silent: the real daemon over real HTTP answers ``/healthz`` 503 with the
reason (secrets masked) and sends one ``evaluation_failing`` notification; the first good cycle answers 200 again
and sends one ``recovered`` note. The health is kept in the store, so a restarted daemon still knows."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import build_app
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.http import HttpServer
from monitor.metrics.prom import Metrics
from monitor.sim.server import SimServer
from monitor.store import Store
from monitor.store.health import read_health
from tests.conftest import wait_until

SECRET = "zz-known-secret-value-4711"

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, severity: critical,
     actions: [notify]}
notify: {language: en}
routing: {mode: "off"}
"""
CHANNELS = """\
channels:
  - id: epay-main
    kind: epay
    methods: [alipay]
    weight: 60
    endpoint: "{main}"
    credentials: {{pid: "1001", key: "${{EPAY_MAIN_KEY}}"}}
    probes: {{query: {{every: 1s, timeout: 1s}}}}
"""


def healthz(base: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Breakable:
    """The pipeline's evaluate step, made to raise on demand (as an impossible weight made it in the field)."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.broken = False

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.broken:
            raise OverflowError(f"int too large to convert to float (key {SECRET})\nsecond line")
        return self.step(*args, **kw)


async def test_failing_cycles_answer_503_notify_once_and_recover(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("EPAY_MAIN_KEY", SECRET)
    async with SimServer() as sim:
        sim.add_channel("epay-main", pid="1001", key=SECRET)
        (tmp_path / "var").mkdir()
        (tmp_path / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
        (tmp_path / "channels.yaml").write_text(CHANNELS.format(main=sim.endpoint("epay-main")), encoding="utf-8")
        cfg = load_config(tmp_path / "monitor.yaml")
        console = io.StringIO()
        app = build_app(cfg, stream=console, metrics=Metrics())
        step = Breakable(app.pipeline.evaluate)
        monkeypatch.setattr(app.pipeline, "evaluate", step)
        cycles = 0

        def counted(_report: object) -> None:
            nonlocal cycles
            cycles += 1

        try:
            async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics, cycle_every=0.2,
                              on_cycle=counted) as daemon:
                http = HttpServer("127.0.0.1", 0, registry=app.metrics.registry, health=daemon.health,
                                  status=dict).start()
                base = f"http://127.0.0.1:{http.port}"
                try:
                    daemon.start()
                    assert await wait_until(lambda: cycles >= 1)
                    assert await asyncio.to_thread(healthz, base) == (200, {"ok": True, "reason": "ok"})

                    step.broken = True  # the evaluation step fails from now on, every cycle
                    assert await wait_until(lambda: read_health(app.store).failures >= 3)
                    status, body = await asyncio.to_thread(healthz, base)
                    assert status == 503 and body["ok"] is False
                    reason = body["reason"]
                    assert reason.startswith("evaluation cycles failing since ")
                    assert reason.endswith(": OverflowError: int too large to convert to float (key ***) "
                                           "second line")
                    assert SECRET not in reason and len(reason) <= 500
                    failing = [line for line in console.getvalue().splitlines() if "FAILING" in line]
                    assert len(failing) == 1, console.getvalue()
                    assert "OverflowError: int too large" in failing[0] and SECRET not in failing[0]
                    logged = [r for r in caplog.records if r.getMessage().startswith("evaluation cycle failed")]
                    assert len(logged) >= 3 and not any(r.exc_info for r in logged)  # no traceback without -v

                    step.broken = False
                    assert await wait_until(lambda: "RECOVERED" in console.getvalue())
                    assert await asyncio.to_thread(healthz, base) == (200, {"ok": True, "reason": "ok"})
                    seen = cycles
                    assert await wait_until(lambda: cycles >= seen + 2)  # later good cycles announce nothing
                    lines = console.getvalue().splitlines()
                    assert len([line for line in lines if "FAILING" in line]) == 1
                    assert len([line for line in lines if "RECOVERED" in line]) == 1
                finally:
                    http.stop()
        finally:
            app.pipeline.close()
            app.store.close()
    assert SECRET not in console.getvalue()


def test_the_health_outlives_a_restart(tmp_path: Path, sqlite_store: Store) -> None:
    """A failing streak is kept in the store: a restarted daemon (or ``paymon status``) reads it, and the
    streak is announced once, not again after the restart."""
    from monitor.store.health import record_failure, record_success

    now = sqlite_store.clock.now()
    assert not read_health(sqlite_store).failing
    assert record_failure(sqlite_store, "OverflowError: x", now=now, sinks=["console"])
    assert not record_failure(sqlite_store, "OverflowError: y", now=now, sinks=["console"])
    url = str(sqlite_store.engine.url)
    reopened = Store.open(url, clock=sqlite_store.clock)
    try:
        health = read_health(reopened)
        assert health.failing and health.failures == 2 and health.reason == "OverflowError: y"
        assert health.describe() == f"evaluation cycles failing since {now.isoformat()}: OverflowError: y"
        assert not record_failure(reopened, "OverflowError: z", now=now, sinks=["console"])
        assert [i.payload["kind"] for i in reopened.due_outbox("console")] == ["evaluation_failing"]
        assert record_success(reopened, now=now, sinks=["console"])
        assert not record_success(reopened, now=now, sinks=["console"])
        assert [i.payload["kind"] for i in reopened.due_outbox("console")] == ["evaluation_failing", "recovered"]
        assert read_health(reopened).describe() == "ok"
    finally:
        reopened.close()
