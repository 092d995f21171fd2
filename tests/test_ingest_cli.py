"""`paymon ingest PATH…`: backfill with progress and a summary; running it twice counts nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from tests.test_pipeline import CHANNELS, MONITOR


def test_backfill_summary_and_idempotence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
    (cfg / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    log = tmp_path / "old.jsonl"
    lines = [json.dumps({"ts": "2026-11-20T10:00:00+08:00", "event": "order_created", "order_id": f"B{i}",
                         "channel": "main", "amount": "9.90"}) for i in range(50)]
    lines += ["{broken", json.dumps({"ts": "2026-11-20T10:00:00", "event": "nope", "order_id": "x", "channel": "main"})]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["ingest", "-c", str(cfg / "monitor.yaml"), str(log)]) == 0
    captured = capsys.readouterr()
    assert "old.jsonl: 50 accepted, 0 duplicate, 2 rejected" in captured.out
    assert "rejected by reason: bad_json 1, unknown_event 1" in captured.out
    assert "100.0%" in captured.err
    assert main(["ingest", "-c", str(cfg / "monitor.yaml"), str(log)]) == 0
    assert "old.jsonl: 0 accepted, 0 duplicate, 0 rejected" in capsys.readouterr().out  # its checkpoint held
    assert main(["ingest", "-c", str(cfg / "monitor.yaml"), str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["ingest", "-c", str(cfg / "monitor.yaml"), "--source", "nginx", str(log)]) == 2
    assert "needs an nginx source in monitor.yaml" in capsys.readouterr().err
