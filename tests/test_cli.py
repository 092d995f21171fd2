"""The CLI as an operator uses it: check-config, once, status, and run as a real process with HTTP and SIGTERM.

One test feeds a known secret through the environment and scans everything paymon wrote — stdout, stderr,
the database, /metrics, /api/status — for it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from tests.conftest import PATIENCE_S

ROOT = Path(__file__).resolve().parent.parent
SECRET = "zz-known-secret-value-4711"

MONITOR = """\
storage: {{url: "sqlite:///var/paymon.db"}}
http: {{listen: "127.0.0.1:{port}"}}
sources: [{{kind: jsonl, path: var/orders.jsonl}}]
rules:
  - {{name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 2, severity: critical,
     actions: [notify, drain]}}
notify: {{language: en}}
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
  - id: epay-backup
    kind: epay
    methods: [alipay]
    weight: 40
    endpoint: "{backup}"
    credentials: {{pid: "1002", key: "backup-key-123456"}}
    probes: {{query: {{every: 1s, timeout: 1s}}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, main_url: str, backup_url: str, port: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "monitor.yaml").write_text(MONITOR.format(port=port), encoding="utf-8")
    (folder / "channels.yaml").write_text(CHANNELS.format(main=main_url, backup=backup_url), encoding="utf-8")
    return folder / "monitor.yaml"


# -- check-config -------------------------------------------------------------------------------------------


def test_check_config_accepts_the_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(ROOT / "config" / "monitor.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok: monitor.yaml and channels.yaml are valid (2 channels")
    assert captured.err == ""  # nothing shipped enabled that cannot run (the Alipay channel needs real keys)


def enable_alipay(config_dir: Path) -> None:
    """Uncomment the shipped Alipay channel as its instructions say (keeping the placeholder keys)."""
    path = config_dir / "channels.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - id: alipay-f2f"))
    lines[start:] = [line.replace("  # ", "  ", 1) for line in lines[start:]]
    path.write_text("".join(lines), encoding="utf-8")


def test_check_config_warns_about_the_alipay_example_enabled_with_placeholders(
        config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enable_alipay(config_dir)
    assert main(["check-config", "-c", str(config_dir / "monitor.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok: monitor.yaml and channels.yaml are valid (3 channels")
    # Placeholder keys: valid YAML, but its probe cannot run. Say so, once.
    assert captured.err == ("warning: channel alipay-f2f: private_key is not an RSA private key (PEM or base64); "
                            "its probes will not run\n")


def test_a_channel_with_unusable_credentials_is_skipped_not_fatal(config_dir: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from monitor.config import load_config
    from monitor.daemon import build_probe_jobs

    enable_alipay(config_dir)
    cfg = load_config(config_dir / "monitor.yaml", env={})
    jobs = build_probe_jobs(cfg.channels)
    assert sorted({(j.channel, j.probe) for j in jobs}) == [
        ("epay-backup", "balance"), ("epay-backup", "query"), ("epay-backup", "test_order"),
        ("epay-main", "balance"), ("epay-main", "query"), ("epay-main", "test_order")]
    assert "channel alipay-f2f: private_key is not an RSA private key" in caplog.text


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("channels.yaml", "query:      {every: 30s, timeout: 5s}", "query:      {every: 30x, timeout: 5s}",
         "channels.yaml:{line} channels[epay-main].probes.query.every: expected a duration like '30s'"),
        ("channels.yaml", "    weight: 60", "    wieght: 60",
         "channels.yaml:{line} channels[epay-main].wieght: unknown key 'wieght'"),
        ("channels.yaml", '"${EPAY_MAIN_KEY:-sim-epay-main-key}"', '"${EPAY_MAIN_KEY}"',
         "channels.yaml:{line} channels[epay-main].credentials.key: environment variable EPAY_MAIN_KEY is not set"),
    ],
    ids=["bad-duration", "unknown-key", "missing-env"],
)
def test_check_config_names_file_line_and_field(config_dir: Path, capsys: pytest.CaptureFixture[str], file: str,
                                                old: str, new: str, expected: str) -> None:
    path = config_dir / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert main(["check-config", "-c", str(config_dir / "monitor.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    if len(err) == 1:  # one problem: one line
        where = str(config_dir / expected.format(line=line))
        assert err[0].startswith(f"paymon: the configuration is invalid: {where}"), err
    else:
        assert re.fullmatch(r"paymon: the configuration is invalid \(\d+ problems\):", err[0])
        assert any(p.startswith(str(config_dir / expected.format(line=line))) for p in err[1:]), err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "once", "check-config", "status", "demo"):
        assert command in out


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "-c", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


# -- once and status ----------------------------------------------------------------------------------------


def simulated_pair(tmp_path: Path, sim_thread: object, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """Both channels of :func:`write_config` served by the simulator: (the simulator, the monitor.yaml)."""
    sim = sim_thread.server  # type: ignore[attr-defined]
    sim_thread.call(sim.add_channel, "epay-main", pid="1001", key=SECRET)  # type: ignore[attr-defined]
    sim_thread.call(sim.add_channel, "epay-backup", pid="1002", key="backup-key-123456")  # type: ignore[attr-defined]
    monkeypatch.setenv("EPAY_MAIN_KEY", SECRET)
    return sim, write_config(tmp_path / "cfg", sim.endpoint("epay-main"), sim.endpoint("epay-backup"))


def test_once_then_status(tmp_path: Path, sim_thread: object, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    sim, cfg = simulated_pair(tmp_path, sim_thread, monkeypatch)
    assert main(["once", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "probes: ok 2;" in out
    assert main(["status", "-c", str(cfg)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "times in Asia/Shanghai (+08:00)"
    assert table[1].split() == ["CHANNEL", "STATE", "PROBES", "WEIGHT", "BASELINE", "NEXT", "RESTORE", "SUCCESS",
                                "ORDERS", "LOST", "CB", "P95", "LAST", "PROBE"]
    assert table[2].split()[:7] == ["epay-main", "healthy", "ok", "60", "60", "-", "—"]  # no orders: no ratio
    assert main(["status", "--json", "-c", str(cfg)]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [c["last_probe"]["outcome"] for c in view["channels"]] == ["ok", "ok"]

    sim_thread.call(sim.faults("epay-main").update, error_rate=1.0)  # type: ignore[attr-defined]
    assert main(["once", "-c", str(cfg)]) == 0
    assert main(["once", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "FIRING [critical] epay-main (epay-main) · channel_down" in out
    assert "weight epay-main (epay-main): 60 → 0" in out
    assert "    weight: 0\n" in (tmp_path / "cfg" / "channels.yaml").read_text(encoding="utf-8")
    assert main(["status", "-c", str(cfg)]) == 3  # a channel is down: cron and monitoring can tell
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epay-main"))
    assert row.split()[:7] == ["epay-main", "down", "failing", "2×", "0", "60", "when"]


def test_a_failing_evaluation_makes_once_exit_1_and_status_exit_4(
        tmp_path: Path, sim_thread: object, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluation that raises (here: a step made to fail, as a bug or a broken store would) fails the cycle:
    ``once`` exits 1 and records it, ``status`` exits 4 and says so above the table, one notification goes out;
    the next good cycle clears it."""
    from monitor.pipeline import Pipeline

    _, cfg = simulated_pair(tmp_path, sim_thread, monkeypatch)
    assert main(["once", "-c", str(cfg)]) == 0
    capsys.readouterr()

    def broken(self: Pipeline, *args: object, **kwargs: object) -> object:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    with monkeypatch.context() as patch:
        patch.setattr(Pipeline, "evaluate", broken)
        assert main(["once", "-c", str(cfg)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("evaluation cycles FAILING since") == 1 and "OverflowError" in captured.out
    assert "Traceback" not in captured.err
    assert main(["status", "-c", str(cfg)]) == 4
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("EVALUATION FAILING since ") and "(1 cycles)" in first
    assert main(["status", "--json", "-c", str(cfg)]) == 4
    assert json.loads(capsys.readouterr().out)["evaluation"]["state"] == "failing"

    assert main(["once", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count("evaluation cycles RECOVERED (1 failed in a row") == 1
    assert main(["status", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("times in ")


def test_once_refuses_to_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    cfg = write_config(tmp_path / "cfg", "http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/")
    monkeypatch.setenv("EPAY_MAIN_KEY", "x" * 10)
    (tmp_path / "cfg" / "var").mkdir()
    with open(tmp_path / "cfg" / "var" / "paymon.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["once", "-c", str(cfg)]) == 1
    assert "another paymon is already running" in capsys.readouterr().err


# -- run, as a real process ---------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=PATIENCE_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_run_serves_http_probes_on_schedule_and_stops_on_sigterm(tmp_path: Path, sim_thread: object) -> None:
    sim = sim_thread.server  # type: ignore[attr-defined]
    sim_thread.call(sim.add_channel, "epay-main", pid="1001", key=SECRET)  # type: ignore[attr-defined]
    sim_thread.call(sim.add_channel, "epay-backup", pid="1002", key="backup-key-123456")  # type: ignore[attr-defined]
    port = free_port()
    cfg = write_config(tmp_path / "cfg", sim.endpoint("epay-main"), sim.endpoint("epay-backup"), port)
    env = {**os.environ, "EPAY_MAIN_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-v", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + PATIENCE_S  # a busy machine starts a Python process with pandas slowly
        metrics = ""
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                status, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue
            if 'paymon_probe_total{channel="epay-main",outcome="ok",probe="query"} 2.0' in metrics:
                break
        else:
            pytest.fail(f"no scheduled probes seen; metrics:\n{metrics[:2000]}")
        assert fetch(f"http://127.0.0.1:{port}/healthz") == (200, '{"ok": true, "reason": "ok"}')
        status, body = fetch(f"http://127.0.0.1:{port}/api/status")
        assert status == 200 and [c["id"] for c in json.loads(body)["channels"]] == ["epay-main", "epay-backup"]
        served = json.loads(body)
        assert served["timezone"] == "Asia/Shanghai"
        assert {k: served["channels"][0][k] for k in ("baseline", "next_restore")} == {"baseline": 60,
                                                                                      "next_restore": None}
        assert served["channels"][0]["probes"]["state"] in ("ok", "none yet")
        sim_thread.call(sim.faults("epay-main").update, error_rate=1.0)  # type: ignore[attr-defined]
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if "    weight: 0\n" in (tmp_path / "cfg" / "channels.yaml").read_text(encoding="utf-8"):
                break
        else:
            pytest.fail("epay-main was not drained")
        # The file is written mid-cycle; the gauges are published at the cycle's end.
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            _, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
            if 'paymon_routing_weight{channel="epay-main"} 0.0' in metrics:
                break
            time.sleep(0.2)
        _, status_body = fetch(f"http://127.0.0.1:{port}/api/status")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, err
    assert "FIRING [critical]" in out and "60 → 0" in out
    assert 'paymon_routing_weight{channel="epay-main"} 0.0' in metrics
    assert 'paymon_alerts_firing{channel="epay-main",rule="channel_down",severity="critical"} 1.0' in metrics
    assert "stopping" in err

    # The secret went into every request's URL: it must be in none of the output.
    db = sqlite3.connect(tmp_path / "cfg" / "var" / "paymon.db")
    dump = "\n".join(db.iterdump())
    db.close()
    for name, text in [("stdout", out), ("stderr", err), ("metrics", metrics), ("status", status_body),
                       ("database", dump)]:
        assert SECRET not in text, f"secret leaked into {name}"
    assert "http_error" in dump  # the scan looked at real content


def test_once_reconciles_and_status_lists_the_lost_order(tmp_path: Path, sim_thread: object,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    import httpx

    from monitor.protocols import epay as v1
    from monitor.sim import Faults

    sim = sim_thread.server  # type: ignore[attr-defined]
    sim_thread.call(sim.add_channel, "epay-main", pid="1001", key=SECRET,  # type: ignore[attr-defined]
                    faults=Faults(pay_probability=1.0, callback_drop_rate=1.0))
    sim_thread.call(sim.add_channel, "epay-backup", pid="1002", key="backup-key-123456")  # type: ignore[attr-defined]
    monkeypatch.setenv("EPAY_MAIN_KEY", SECRET)
    cfg = write_config(tmp_path / "cfg", sim.endpoint("epay-main"), sim.endpoint("epay-backup"))
    text = cfg.read_text(encoding="utf-8").replace(
        "notify: {language: en}", "notify: {language: en}\ndefaults: {callback_deadline: 1s}\n"
                                  "reconcile: {older_than: 1m}")
    cfg.write_text(text, encoding="utf-8")
    # An order the shop created ten minutes ago, which the buyer paid at the channel; its notify never came.
    params = {"pid": "1001", "type": "alipay", "out_trade_no": "LOSTCLI000000001", "notify_url": "http://127.0.0.1:9/n",
              "return_url": "http://127.0.0.1:9/r", "name": "LOSTCLI000000001", "money": "9.9",
              "clientip": "127.0.0.1", "device": "pc"}
    params["sign"] = v1.sign_md5(params, SECRET)
    params["sign_type"] = "MD5"
    trade_no = httpx.post(sim.endpoint("epay-main") + "mapi.php", data=params).json()["trade_no"]
    assert sim_thread.call(sim.gateway.buyer_visits, "epay-main", trade_no)  # type: ignore[attr-defined]
    created = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    (tmp_path / "cfg" / "var").mkdir()
    (tmp_path / "cfg" / "var" / "orders.jsonl").write_text(json.dumps(
        {"ts": created, "event": "order_created", "order_id": "LOSTCLI000000001", "channel": "epay-main",
         "amount": "9.90"}) + "\n", encoding="utf-8")
    assert main(["once", "-c", str(cfg)]) == 0
    assert "reconciled: 1 asked, 1 paid at the channel" in capsys.readouterr().out
    time.sleep(2.1)  # past the pay time (whole seconds: +1 s) + the 1 s deadline
    assert main(["once", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "LOST ORDER LOSTCLI000000001 · epay-main (epay-main) · 9.90 · paid at the channel" in out
    assert f"trade no {trade_no}" in out and "lost orders: 1 new" in out
    assert main(["status", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "lost orders (paid at the channel, not in the shop):" in out
    assert "LOSTCLI000000001  epay-main  9.90  paid at the channel 20" in out and f"trade_no {trade_no}" in out
    assert SECRET not in out


def test_check_config_warns_when_replay_has_nowhere_to_go(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPAY_MAIN_KEY", SECRET)
    cfg = write_config(tmp_path / "cfg", "http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/")
    cfg.write_text(cfg.read_text(encoding="utf-8") + "reconcile: {replay_notify: true}\n", encoding="utf-8")
    assert main(["check-config", "-c", str(cfg)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: channel {ch}: reconcile.replay_notify is on but the channel has no notify_url; its lost "
                   "orders will be reported, not replayed" for ch in ("epay-main", "epay-backup")]


@pytest.mark.parametrize(
    ("test_order", "sources", "warned"),
    [
        (False, "sources: []", True),
        (True, "sources: []", False),  # paymon's own test order is signed
        (False, "sources: [{kind: jsonl, path: orders.jsonl}]", False),  # real orders of any channel
        (False, "sources: [{kind: nginx, path: access.log, callbacks: {/pay/notify: other}}]", True),
        (False, "sources: [{kind: nginx, path: access.log, callbacks: {/pay/notify: v2}}]", False),
    ],
)
def test_check_config_warns_when_a_signed_query_has_nothing_signed_to_ask(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], test_order: bool, sources: str, warned: bool) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from monitor.protocols.epay_v2 import base64_from_pem, private_key_pem, public_key_pem

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path / "cfg"
    folder.mkdir()
    probes: dict[str, Any] = {"query": {"every": "30s"}}
    if test_order:
        probes["test_order"] = {"every": "5m"}
    channels = [{"id": ch, "kind": kind, "weight": 10, "endpoint": "http://127.0.0.1:9/x/", "probes": probes,
                 "credentials": creds} for ch, kind, creds in (
        ("v2", "epay_v2", {"pid": "1", "private_key": base64_from_pem(private_key_pem(key)),
                           "platform_public_key": public_key_pem(key)}),
        ("other", "epay", {"pid": "1", "key": "k" * 16}))]
    (folder / "channels.yaml").write_text(json.dumps({"channels": channels}), encoding="utf-8")
    (folder / "monitor.yaml").write_text(sources + "\n", encoding="utf-8")
    assert main(["check-config", "-c", str(folder / "monitor.yaml")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ([
        "warning: channel v2: its query probe can only ask about a sentinel order, whose answer epay_v2 does not "
        "sign (it signs answers about orders that exist); add a test_order probe, or an order source with this "
        "channel's orders, so it asks about an order the gateway signs"] if warned else [])
