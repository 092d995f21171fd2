"""The webhook weight sink against a real receiver on 127.0.0.1 that checks the signature and answers 500 for a
while: every weight change the real pipeline makes arrives once, in order, signed; a failing delivery holds the
ones behind it, across a restart too."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.models import RoutingRow, WeightChange
from monitor.routing.webhook import WebhookWeightSink
from monitor.store import Store
from tests.routing.rig import AppRig

SECRET = "hook-secret-0123456789"

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, severity: critical,
     actions: [notify, drain]}
notify: {language: en}
routing:
  sinks:
    - {kind: yaml, path: channels.yaml}
    - {kind: webhook, url: "URL", secret: "${HOOK_SECRET}", timeout: 2s}
  restore: {steps: [0.25, 0.5, 1.0], every: 5m, healthy_for: 10m}
"""
CHANNELS = """\
channels:
  - id: main
    kind: epay
    methods: [alipay]
    weight: 60
    endpoint: http://127.0.0.1:9/main/
    credentials: {pid: "1001", key: "main-key-123456"}
  - id: backup
    kind: epay
    methods: [alipay]
    weight: 40
    endpoint: http://127.0.0.1:9/backup/
    credentials: {pid: "1002", key: "backup-key-123456"}
"""


class Receiver:
    """A shop's webhook endpoint: refuses a bad signature (401), answers 500 while ``failing``, else records the
    change and answers 204."""

    def __init__(self) -> None:
        self.failing = True
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []  # 500s while failing
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-Paymon-Timestamp", "")
                want = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, self.headers.get("X-Paymon-Signature", "")):
                    receiver.bad_signatures += 1
                    status = 401
                elif receiver.failing:
                    receiver.refused.append(json.loads(raw))
                    status = 500
                else:
                    receiver.accepted.append(json.loads(raw))
                    status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/paymon/weights"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Rig(AppRig):
    def __init__(self, folder: Path, clock: FixedClock, url: str, monitor: str = MONITOR) -> None:
        super().__init__(folder, clock, monitor.replace("URL", url), CHANNELS, env={"HOOK_SECRET": SECRET})


def test_every_change_arrives_once_in_order_signed_after_500s_and_a_restart(
        tmp_path: Path, clock: FixedClock, receiver: Receiver) -> None:
    rig = Rig(tmp_path, clock, receiver.url)
    rig.probes("main", "ok")
    rig.app.pipeline.cycle()
    rig.probes("main", "timeout", "timeout", "timeout")
    rig.app.pipeline.cycle()  # drained: 60 -> 0, the webhook answers 500
    rig.probes("main", "ok")
    for minute in range(30):  # healed: three restore steps are queued behind the undelivered drain
        clock.advance(timedelta(minutes=1))
        rig.app.pipeline.cycle()
        if minute == 12:
            rig.restart()  # the queue survives a restart
    history = [(w.old, w.new) for w in reversed(rig.app.store.weight_history())]
    assert history == [(60, 0), (0, 15), (15, 30), (30, 60)]
    assert receiver.accepted == []
    # Only the head was tried while it failed (with backoff: fewer tries than cycles); nothing overtook it.
    assert len(receiver.refused) >= 3
    assert all((r["old"], r["new"]) == (60, 0) for r in receiver.refused)
    assert rig.app.store.outbox_depth()["webhook:main"] == 4

    receiver.failing = False
    clock.advance(timedelta(minutes=10))  # the longest backoff
    rig.app.pipeline.cycle()
    rig.app.pipeline.cycle()
    assert [(r["channel"], r["old"], r["new"]) for r in receiver.accepted] == [
        ("main", 60, 0), ("main", 0, 15), ("main", 15, 30), ("main", 30, 60)]
    assert list(receiver.accepted[0]) == ["channel", "old", "new", "reason", "rule", "at"]
    assert receiver.accepted[0]["rule"] == "channel_down" and receiver.accepted[1]["rule"] is None
    assert receiver.accepted[1]["reason"] == "restore step 1/3"
    assert receiver.bad_signatures == 0
    assert rig.app.store.outbox_depth().get("webhook:main", 0) == 0
    rig.app.pipeline.close()
    rig.app.store.close()


def test_a_webhook_alone_gets_every_change(tmp_path: Path, clock: FixedClock, receiver: Receiver) -> None:
    """With no file to read back, paymon plans from its own applied weights; the shop hears of each change."""
    alone = MONITOR.replace("    - {kind: yaml, path: channels.yaml}\n", "")
    rig = Rig(tmp_path, clock, receiver.url, alone)
    receiver.failing = False
    before = (tmp_path / "channels.yaml").read_text(encoding="utf-8")
    rig.probes("main", "ok")
    rig.app.pipeline.cycle()
    rig.probes("main", "timeout", "timeout", "timeout")
    rig.app.pipeline.cycle()  # drained
    rig.probes("main", "ok")
    for _ in range(30):
        clock.advance(timedelta(minutes=1))
        rig.app.pipeline.cycle()
    assert [(r["old"], r["new"]) for r in receiver.accepted] == [(60, 0), (0, 15), (15, 30), (30, 60)]
    assert receiver.bad_signatures == 0
    assert (tmp_path / "channels.yaml").read_text(encoding="utf-8") == before  # no file sink: nothing written
    assert rig.app.store.routing_states()["main"].applied == 60
    rig.app.pipeline.close()
    rig.app.store.close()


def test_a_wrong_secret_is_refused_and_blocks_the_queue(sqlite_store: Store, clock: FixedClock,
                                                        receiver: Receiver) -> None:
    from monitor.alerts.dispatch import deliver_in_order
    from monitor.secret import Secret

    receiver.failing = False
    now = clock.now()
    changes = [WeightChange("main", 60, 0, "rule channel_down: drain", now, "channel_down"),
               WeightChange("main", 0, 15, "restore step 1/3", now + timedelta(seconds=1))]
    sqlite_store.save_routing([RoutingRow("main", 60, 15, 60, 1, "restore step 1/3", now)], changes,
                              ["webhook:main"])
    wrong = WebhookWeightSink(receiver.url, Secret("not-the-secret"), clock=clock)
    assert deliver_in_order(sqlite_store, {"webhook:main": wrong}) == 0
    assert receiver.bad_signatures == 1 and receiver.accepted == []
    clock.advance(timedelta(minutes=10))
    right = WebhookWeightSink(receiver.url, Secret(SECRET), clock=clock)
    assert deliver_in_order(sqlite_store, {"webhook:main": right}) == 2
    assert [(r["old"], r["new"]) for r in receiver.accepted] == [(60, 0), (0, 15)]
    wrong.close()
    right.close()


def test_a_waiting_head_holds_the_queue(store: Store, clock: FixedClock) -> None:
    """On SQLite, PostgreSQL and MariaDB alike."""
    now = clock.now()
    changes = [WeightChange("main", 60, 0, "drain", now, "r"), WeightChange("main", 0, 15, "restore", now)]
    store.save_routing([RoutingRow("main", 60, 15, 60, 1, "", now)], changes, ["webhook:main"])
    head = store.next_in_order("webhook:main")
    assert head is not None and head.payload["new"] == 0
    store.mark_retry(head.id, "HTTP 500", now + timedelta(seconds=5))
    assert store.next_in_order("webhook:main") is None  # the second is due, but waits behind the head
    clock.advance(timedelta(seconds=5))
    again = store.next_in_order("webhook:main")
    assert again is not None and again.id == head.id


def test_webhook_config_needs_a_secret_and_distinct_names(tmp_path: Path) -> None:
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(
        "routing: {sinks: [{kind: webhook, url: 'http://127.0.0.1:9/w'}]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="secret"):
        load_config(tmp_path / "monitor.yaml", env={})
    (tmp_path / "monitor.yaml").write_text(
        "routing: {sinks: [{kind: webhook, url: 'http://127.0.0.1:9/a', secret: '${S}'},\n"
        "                  {kind: webhook, url: 'http://127.0.0.1:9/b', secret: '${S}'}]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="own name"):
        load_config(tmp_path / "monitor.yaml", env={"S": SECRET})
    (tmp_path / "monitor.yaml").write_text(
        "routing: {sinks: [{kind: webhook, name: " + "x" * 25 + ", url: 'http://127.0.0.1:9/a', secret: '${S}'}]}\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match="at most 24"):
        load_config(tmp_path / "monitor.yaml", env={"S": SECRET})
    (tmp_path / "monitor.yaml").write_text(
        "routing: {sinks: [{kind: webhook, url: 'http://127.0.0.1:9/a', secret: '${S}'},\n"
        "                  {kind: webhook, name: shop-b, url: 'http://127.0.0.1:9/b', secret: '${S}'}]}\n",
        encoding="utf-8")
    cfg = load_config(tmp_path / "monitor.yaml", env={"S": SECRET})
    assert [s.name for s in cfg.monitor.routing.all_sinks] == ["main", "shop-b"]
    assert SECRET not in repr(cfg.monitor.routing) and cfg.redactor(f"x {SECRET} y") == "x *** y"
