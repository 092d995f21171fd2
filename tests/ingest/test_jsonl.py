"""The JSONL source: incremental reads, partial lines, rotation, restarts, and malformed input counted."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.clock import FixedClock
from monitor.ingest import JsonlSource
from monitor.ingest.events import Rejected, parse_event
from monitor.store import Store


def line(clock: FixedClock, event: str, order: str, minutes: float = -10, **kw: Any) -> str:
    rec = {"ts": (clock.now() + timedelta(minutes=minutes)).isoformat(), "event": event, "order_id": order,
           "channel": "c1", **kw}
    return json.dumps(rec, ensure_ascii=False) + "\n"


def source(path: Path, store: Store, clock: FixedClock, **kw: Any) -> JsonlSource:
    return JsonlSource(source_id="jsonl:test", path=path, timezone="Asia/Shanghai", store=store, clock=clock,
                       channels=["c1"], **kw)


def test_reads_only_complete_new_lines(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_text(line(clock, "order_created", "A") + line(clock, "pay_redirect", "A"), encoding="utf-8")
    src = source(log, sqlite_store, clock)
    assert src.poll().accepted == 2
    with log.open("a", encoding="utf-8") as f:
        f.write(line(clock, "order_paid", "A")[:20])  # a partial line waits for its newline
    assert src.poll().accepted == 0
    with log.open("a", encoding="utf-8") as f:
        f.write(line(clock, "order_paid", "A")[20:])
    assert src.poll().accepted == 1
    src.close()


def test_restart_resumes_at_the_checkpoint(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_text("".join(line(clock, "order_created", f"O{i}") for i in range(10)), encoding="utf-8")
    first = source(log, sqlite_store, clock, batch_lines=3)
    assert first.poll().accepted == 10
    first.close()
    with log.open("a", encoding="utf-8") as f:
        f.write(line(clock, "order_created", "O10"))
    second = source(log, sqlite_store, clock)
    r = second.poll()
    assert (r.accepted, r.duplicate) == (1, 0)
    assert sqlite_store.order_count() == 11
    second.close()


def test_crash_before_commit_rereads_without_double_counting(tmp_path: Path, sqlite_store: Store,
                                                              clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_text("".join(line(clock, "order_created", f"O{i}") for i in range(5)), encoding="utf-8")
    src = source(log, sqlite_store, clock)
    src.poll()
    # Simulate a crash that lost the checkpoint move but not the rows: rewind the checkpoint.
    from monitor.store import Checkpoint

    cp = sqlite_store.checkpoint("jsonl:test")
    assert cp is not None
    sqlite_store.save_checkpoint(Checkpoint(cp.source, cp.file_id, 0))
    with source(log, sqlite_store, clock) as again:
        r = again.poll()
    assert (r.accepted, r.duplicate) == (0, 5)
    assert sqlite_store.order_count() == 5
    src.close()


def test_rename_rotation_reads_the_old_tail_then_the_new_file(tmp_path: Path, sqlite_store: Store,
                                                              clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_text(line(clock, "order_created", "A"), encoding="utf-8")
    src = source(log, sqlite_store, clock)
    assert src.poll().accepted == 1
    with log.open("a", encoding="utf-8") as f:
        f.write(line(clock, "order_created", "B"))  # written just before rotation
    os.rename(log, tmp_path / "orders.jsonl.1")
    log.write_text(line(clock, "order_created", "C"), encoding="utf-8")
    assert src.poll().accepted == 2
    assert sqlite_store.order_count() == 3
    src.close()


def test_copytruncate_restarts_at_zero(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_text(line(clock, "order_created", "A") + line(clock, "order_created", "B"), encoding="utf-8")
    src = source(log, sqlite_store, clock)
    src.poll()
    log.write_text(line(clock, "order_created", "C"), encoding="utf-8")  # truncated in place, then appended
    assert src.poll().accepted == 1
    assert sqlite_store.order_count() == 3
    src.close()


def test_malformed_lines_are_counted_and_skipped(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    good = line(clock, "order_created", "A")
    bad = [
        b"{not json\n",
        b"\xff\xfe broken utf-8\n",
        b"[1, 2]\n",
        line(clock, "teleported", "B").encode(),
        line(clock, "order_created", "C", channel="other").encode(),
        json.dumps({"event": "order_created", "order_id": "D", "channel": "c1"}).encode() + b"\n",
        line(clock, "order_created", "E", minutes=60).encode(),
        b'{"ts": "2026-01-01T00:00:00", "event": "order_created", "order_id": "F", "channel": "c1", '
        + b'"detail": "' + b"x" * (1 << 20) + b'"}\n',
        b"\n",
    ]
    log.write_bytes(b"".join(bad) + good.encode())
    with source(log, sqlite_store, clock) as src:
        r = src.poll()
    assert r.accepted == 1
    assert r.reasons == {"bad_json": 1, "bad_utf8": 1, "not_an_object": 1, "unknown_event": 1,
                         "unknown_channel": 1, "missing_ts": 1, "future_timestamp": 1, "line_too_long": 1}
    assert r.rejected == 8


def test_missing_file_is_not_an_error(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    with source(tmp_path / "none.jsonl", sqlite_store, clock) as src:
        assert src.poll().accepted == 0


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        ({"ts": "yesterday"}, "bad_timestamp"),
        ({"ts": True}, "bad_timestamp"),
        ({"amount": "ten"}, "bad_amount"),
        ({"amount": "NaN"}, "bad_amount"),
        ({"verified": "yes"}, "bad_verified"),
        ({"order_id": ""}, "missing_order_id"),
    ],
)
def test_field_validation(rec: dict[str, Any], reason: str, clock: FixedClock) -> None:
    base = {"ts": "2026-11-26T01:00:00", "event": "callback_received", "order_id": "A", "channel": "c1"}
    from zoneinfo import ZoneInfo

    with pytest.raises(Rejected) as exc:
        parse_event({**base, **rec}, tz=ZoneInfo("UTC"), now=clock.now())
    assert exc.value.reason == reason


def test_naive_times_use_the_source_timezone(clock: FixedClock) -> None:
    from zoneinfo import ZoneInfo

    e = parse_event({"ts": "2026-11-26T10:00:00", "event": "callback_received", "order_id": "A",
                     "channel": "c1", "paid_at": 1764122400, "verified": True, "amount": "10.00"},
                    tz=ZoneInfo("Asia/Shanghai"), now=clock.now())
    assert e.ts.isoformat() == "2026-11-26T02:00:00+00:00"
    assert e.paid_at is not None and e.paid_at.isoformat() == "2025-11-26T02:00:00+00:00"
    assert str(e.amount) == "10.00" and e.verified is True


def test_field_mapping_adapts_another_shops_log(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    rec = {"time": (clock.now() - timedelta(minutes=1)).isoformat(), "event": "order_created", "sn": "X1",
           "gateway": "c1", "price": "9.90"}
    log.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    fields = {"ts": "time", "order_id": "sn", "channel": "gateway", "amount": "price"}
    with source(log, sqlite_store, clock, fields=fields) as src:
        assert src.poll().accepted == 1
    row = sqlite_store.orders_frame(clock.now() - timedelta(hours=1)).iloc[0]
    assert (row["order_id"], row["channel"], row["amount"]) == ("X1", "c1", "9.90")
