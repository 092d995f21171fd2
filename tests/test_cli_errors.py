"""Ordinary mistakes, made with the real CLI in its own process: each is one line on stderr, never a traceback,
and the documented exit code (2 usage, config or input error; 1 runtime failure)."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MONITOR = """\
storage: {{url: "sqlite:///var/paymon.db"}}
http: {{listen: "127.0.0.1:{http_port}"}}
sources: [{{kind: jsonl, path: var/orders.jsonl, timezone: UTC}}]
rules:
  - {{name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3, actions: [notify, drain]}}
notify: {{language: en}}
"""
CHANNELS = """\
channels:
  - id: main
    kind: epay
    methods: [alipay]
    weight: 60
    endpoint: http://127.0.0.1:{sim_port}/main/
    credentials: {{pid: "1001", key: "main-key-123456"}}
"""
GOOD_LINE = '{"ts": "2026-11-20T10:00:00Z", "event": "order_created", "order_id": "A1", "channel": "main"}\n'


@dataclass
class Setup:
    """A config folder whose HTTP and simulator ports are held by this test (so they are taken)."""

    folder: Path
    http_port: int
    sim_port: int

    @property
    def monitor(self) -> str:
        return str(self.folder / "monitor.yaml")

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.folder / file
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    held = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        held.append(sock)
    http_port, sim_port = (s.getsockname()[1] for s in held)
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "monitor.yaml").write_text(MONITOR.format(http_port=http_port), encoding="utf-8")
    (folder / "channels.yaml").write_text(CHANNELS.format(sim_port=sim_port), encoding="utf-8")
    (tmp_path / "orders.jsonl").write_text(GOOD_LINE, encoding="utf-8")
    (tmp_path / "logs").mkdir()
    (tmp_path / "orders.db").write_bytes(b"SQLite format 3\x00" + bytes(200))
    (tmp_path / "orders.jsonl.1.gz").write_bytes(gzip.compress(GOOD_LINE.encode()))
    (tmp_path / "latin1.log").write_bytes("caf\u00e9 ok\n".encode("latin-1"))
    try:
        yield Setup(folder, http_port, sim_port)
    finally:
        for sock in held:
            sock.close()


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Setup], list[str]]
    code: int
    says: str
    prepare: Callable[[Setup], None] | None = None


def _c(s: Setup) -> list[str]:
    return ["-c", s.monitor]


def _edit(file: str, old: str, new: str) -> Callable[[Setup], None]:
    return lambda s: s.edit(file, old, new)


CASES = [
    # usage errors: exit 2, one line naming the argument
    Case("demo-negative-duration", lambda s: ["demo", "--duration", "-3"], 2,
         "paymon demo: argument --duration: must be > 0, got -3 (see paymon demo --help)"),
    Case("demo-nan-duration", lambda s: ["demo", "--duration", "nan"], 2, "argument --duration: expected a finite"),
    Case("sim-zero-rate", lambda s: ["sim", *_c(s), "--rate", "0"], 2, "paymon sim: argument --rate: must be > 0"),
    Case("sim-inf-rate", lambda s: ["sim", *_c(s), "--rate", "inf"], 2, "argument --rate: expected a finite number"),
    Case("sim-port-out-of-range", lambda s: ["sim", *_c(s), "--port", "70000"], 2,
         "argument --port: expected a port number 0-65535, got 70000"),
    Case("ingest-unknown-zone", lambda s: ["ingest", *_c(s), "--timezone", "Asia/Beijing", "orders.jsonl"], 2,
         "argument --timezone: unknown time zone 'Asia/Beijing'; did you mean 'Asia/Shanghai'?"),
    Case("unknown-command", lambda s: ["frobnicate"], 2, "paymon: argument COMMAND: invalid choice: 'frobnicate'"),
    Case("no-command", lambda s: [], 2, "the following arguments are required: COMMAND"),
    Case("backtest-bad-since", lambda s: ["backtest", *_c(s), "--since", "soon"], 2, "paymon: --since/--step:"),
    # input errors: exit 2, one line naming the file
    Case("ingest-directory", lambda s: ["ingest", *_c(s), "logs"], 2, "paymon: logs is a directory"),
    Case("ingest-missing-file", lambda s: ["ingest", *_c(s), "nope.jsonl"], 2, "paymon: no such file: nope.jsonl"),
    Case("ingest-binary-file", lambda s: ["ingest", *_c(s), "orders.db"], 2,
         "paymon: orders.db cannot be ingested: it holds NUL bytes"),
    Case("ingest-gzip-file", lambda s: ["ingest", *_c(s), "orders.jsonl.1.gz"], 2, "it is gzip-compressed"),
    Case("ingest-not-utf8", lambda s: ["ingest", *_c(s), "latin1.log"], 2, "it is not UTF-8 text"),
    Case("missing-config", lambda s: ["check-config", "-c", "nowhere/monitor.yaml"], 2, "no such file"),
    # config errors: exit 2, one line `file:line field: message`
    Case("weight-29-digits", lambda s: ["check-config", *_c(s)], 2,
         "channels.yaml:5 channels[main].weight: must be at most 10000",
         _edit("channels.yaml", "weight: 60", "weight: 12345678901234567890123456789")),
    Case("config-unknown-zone", lambda s: ["check-config", *_c(s)], 2,
         "monitor.yaml:3 sources[0].timezone: unknown time zone 'Beijing'; did you mean 'Asia/Shanghai'?",
         _edit("monitor.yaml", "timezone: UTC", "timezone: Beijing")),
    Case("fee-rate-nan", lambda s: ["check-config", *_c(s)], 2, "channels[main].fee_rate: expected a finite number",
         _edit("channels.yaml", "weight: 60", "weight: 60\n    fee_rate: .nan")),
    Case("retention-too-long", lambda s: ["check-config", *_c(s)], 2,
         "storage.retention.probes: '100000d' is too long: at most 366d",
         _edit("monitor.yaml", 'storage: {url: "sqlite:///var/paymon.db"}',
               'storage: {url: "sqlite:///var/paymon.db", retention: {probes: 100000d}}')),
    Case("min-orders-huge", lambda s: ["check-config", *_c(s)], 2, "rules[channel_down].min_orders: must be at most",
         _edit("monitor.yaml", "threshold: 3,", "threshold: 3, min_orders: 99999999999999999999,")),
    Case("threshold-inf", lambda s: ["check-config", *_c(s)], 2, "rules[channel_down].threshold:",
         _edit("monitor.yaml", "threshold: 3,", "threshold: .inf,")),
    Case("run-with-a-bad-config", lambda s: ["run", *_c(s)], 2, "channels[main].weight: must be at least 0",
         _edit("channels.yaml", "weight: 60", "weight: -5")),
    # runtime failures: exit 1, one line naming the address
    Case("run-http-port-taken", lambda s: ["run", *_c(s)], 1, "paymon: cannot listen on 127.0.0.1:{http}: address "
         "already in use"),
    Case("sim-port-taken", lambda s: ["sim", *_c(s)], 1, "paymon: cannot listen on 127.0.0.1:{sim}: address "
         "already in use"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_an_ordinary_mistake_is_one_line_and_its_exit_code(setup: Setup, case: Case) -> None:
    if case.prepare is not None:
        case.prepare(setup)
    done = subprocess.run([sys.executable, "-m", "monitor", *case.args(setup)], cwd=setup.folder.parent,
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert len(err) == 1, done.stderr
    assert case.says.format(http=setup.http_port, sim=setup.sim_port) in err[0]
    assert done.returncode == case.code, done.stderr


def test_a_run_refused_for_its_port_leaves_nothing_behind(setup: Setup) -> None:
    """The HTTP port is bound first: when it is taken, no store was created and no weight was written."""
    before = (setup.folder / "channels.yaml").read_bytes()
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", setup.monitor], cwd=setup.folder.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert not (setup.folder / "var" / "paymon.db").exists()
    assert (setup.folder / "channels.yaml").read_bytes() == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_one_line(setup: Setup) -> None:
    log = setup.folder.parent / "orders.jsonl"
    log.chmod(0)
    done = subprocess.run([sys.executable, "-m", "monitor", "ingest", "-c", setup.monitor, str(log)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (2, f"paymon: cannot read {log}: permission denied\n")
