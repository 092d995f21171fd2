"""The HTTP endpoint over a real socket on 127.0.0.1: metrics, health with its reason, status JSON, 404, 500."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.http import HttpServer
from monitor.metrics.prom import Metrics
from monitor.models import ProbeResult


class State:
    healthy = True

    def health(self) -> tuple[bool, str]:
        return (True, "ok") if self.healthy else (False, "storage does not answer")

    def status(self) -> dict[str, Any]:
        if not self.healthy:
            raise RuntimeError("boom")
        return {"channels": [{"id": "epay-main", "name": "易支付主通道"}]}


@pytest.fixture
def served() -> Iterator[tuple[str, Metrics, State]]:
    metrics = Metrics()
    state = State()
    server = HttpServer("127.0.0.1", 0, registry=metrics.registry, health=state.health, status=state.status).start()
    try:
        yield f"http://127.0.0.1:{server.port}", metrics, state
    finally:
        server.stop()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_metrics_expose_probe_series(served: tuple[str, Metrics, State]) -> None:
    base, metrics, _ = served
    at = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.observe_probe(ProbeResult("epay-main", "query", "ok", 0.12, at))
    metrics.observe_probe(ProbeResult("epay-main", "query", "timeout", 5.0, at))
    status, ctype, body = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    total = {s.labels["outcome"]: s.value for s in fams["paymon_probe"].samples
             if s.name == "paymon_probe_total"}
    assert total == {"ok": 1.0, "timeout": 1.0}
    [success] = fams["paymon_probe_success"].samples
    assert success.value == 0.0
    count = [s for s in fams["paymon_probe_duration_seconds"].samples if s.name.endswith("_count")]
    assert count[0].value == 2.0
    assert not any(name.endswith("_created") for name in fams)


def test_health_and_status(served: tuple[str, Metrics, State]) -> None:
    base, _, state = served
    assert get(base + "/healthz")[0] == 200
    status, _, body = get(base + "/api/status")
    assert status == 200 and json.loads(body)["channels"][0]["name"] == "易支付主通道"
    state.healthy = False
    status, _, body = get(base + "/healthz")
    assert status == 503 and json.loads(body) == {"ok": False, "reason": "storage does not answer"}
    status, _, body = get(base + "/api/status")
    assert status == 500 and json.loads(body) == {"error": "RuntimeError"}
    assert get(base + "/nope")[0] == 404
