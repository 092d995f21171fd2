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


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
    (cfg / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    return cfg / "monitor.yaml"


def _event(order: str) -> str:
    return json.dumps({"ts": "2026-11-20T10:00:00+08:00", "event": "order_created", "order_id": order,
                       "channel": "main", "amount": "9.90"})


def test_backfill_reads_the_last_line_without_a_newline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = _config(tmp_path)
    log = tmp_path / "shop.jsonl"
    log.write_text("\n".join(_event(f"N{i}") for i in range(3)), encoding="utf-8")  # no newline at the end
    assert main(["ingest", "-c", str(monitor), str(log)]) == 0
    assert "shop.jsonl: 3 accepted, 0 duplicate, 0 rejected" in capsys.readouterr().out
    with open(log, "a", encoding="utf-8") as f:  # the writer finishes its line and goes on
        f.write("\n" + _event("N3") + "\n")
    assert main(["ingest", "-c", str(monitor), str(log)]) == 0
    assert "shop.jsonl: 1 accepted, 0 duplicate, 0 rejected" in capsys.readouterr().out


def test_backfill_names_the_rejected_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = _config(tmp_path)
    log = tmp_path / "shop.jsonl"
    rows = [_event(f"R{i}") for i in range(14)]
    for n in (5, 10, 11, 12, 13, 14):
        rows[n - 1] = "{not json"
    rows[7] = json.dumps({"ts": "2026-11-20T10:00:00+08:00", "event": "order_created", "channel": "main"})
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["ingest", "-c", str(monitor), str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "shop.jsonl: 7 accepted, 0 duplicate, 7 rejected" in out
    assert "shop.jsonl: rejected 7 lines: bad_json at lines 5, 10, 11, 12, 13 and 1 more; missing_order_id at line 8" \
        in out


def test_a_binary_file_is_refused_before_anything_is_read(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monitor = _config(tmp_path)
    good = tmp_path / "good.jsonl"
    good.write_text(_event("G1") + "\n", encoding="utf-8")
    blob = tmp_path / "orders.db"
    blob.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    assert main(["ingest", "-c", str(monitor), str(good), str(blob)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"paymon: {blob} cannot be ingested: it holds NUL bytes (a binary file, "
                                    "not a text log)")
    assert "accepted" not in captured.out  # the good file was not read either: the command was wrong
