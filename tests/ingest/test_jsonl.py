"""The JSONL source: incremental reads, partial lines, rotation, restarts, crashes, and malformed input counted.

Rotation, restart and crash scenarios are judged against a clean single pass over the same bytes: the whole orders
table and the summed counts must come out exactly the same.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from monitor.clock import FixedClock
from monitor.ingest import JsonlSource
from monitor.ingest.events import Rejected, parse_event
from monitor.ingest.files import binary_reason
from monitor.ingest.jsonl import FINGERPRINT_BYTES, MAX_LINE
from monitor.ingest.report import rejected_lines
from monitor.models import IngestResult, OrderEvent
from monitor.store import Checkpoint, Store
from monitor.store import tables as t

ROOT = Path(__file__).resolve().parents[2]


def line(clock: FixedClock, event: str, order: str, minutes: float = -10, **kw: Any) -> str:
    rec = {"ts": (clock.now() + timedelta(minutes=minutes)).isoformat(), "event": event, "order_id": order,
           "channel": "c1", **kw}
    return json.dumps(rec, ensure_ascii=False) + "\n"


def source(path: Path, store: Store, clock: FixedClock, **kw: Any) -> JsonlSource:
    kw.setdefault("source_id", "jsonl:test")
    return JsonlSource(path=path, timezone="Asia/Shanghai", store=store, clock=clock, channels=["c1"], **kw)


def order_log(clock: FixedClock, orders: int = 40, seed: int = 3) -> list[bytes]:
    """A shop's log: interleaved lifecycles (expired, paid, unverified and retried callbacks, late duplicates)
    in time order, with malformed lines among them."""
    rng = random.Random(seed)
    timed: list[tuple[float, str]] = []
    for i in range(orders):
        oid, t0 = f"L{i:03d}", -300 + i * 2.5
        timed.append((t0, line(clock, "order_created", oid, t0, amount=rng.choice(["9.90", "19.90"]),
                               method=rng.choice(["alipay", "wxpay"]))))
        timed.append((t0 + 0.1, line(clock, "pay_redirect", oid, t0 + 0.1)))
        if rng.random() < 0.25:
            timed.append((t0 + 15, line(clock, "order_expired", oid, t0 + 15)))
            continue
        paid = (clock.now() + timedelta(minutes=t0 + 1)).isoformat()
        if rng.random() < 0.2:
            timed.append((t0 + 1.2, line(clock, "callback_received", oid, t0 + 1.2, verified=False, trade_no=f"X{i}")))
        callback = line(clock, "callback_received", oid, t0 + 1.5, verified=True, trade_no=f"T{i}", paid_at=paid)
        timed.append((t0 + 1.5, callback))
        if rng.random() < 0.3:  # the gateway retried its notify: a duplicate
            timed.append((t0 + 4, callback))
        timed.append((t0 + 1.6, line(clock, "order_paid", oid, t0 + 1.6)))
        timed.append((t0 + 1.7, line(clock, "order_delivered", oid, t0 + 1.7)))
        if rng.random() < 0.1:  # an earlier copy of the creation, logged late: it moves created_at back
            timed.append((t0 + 6, line(clock, "order_created", oid, t0 - 0.5)))
    out = [text.encode() for _, text in sorted(timed, key=lambda x: x[0])]
    bad = [b"{not json", b"\xff\xfe not utf-8", b'["an", "array"]', line(clock, "teleported", "Z1").encode()[:-1],
           line(clock, "order_created", "Z2", channel="other").encode()[:-1]]
    for i, b in enumerate(bad):
        out.insert(7 + i * 23, b + b"\n")
    return out


def orders_table(store: Store) -> list[dict[str, Any]]:
    """Every stored order, whole, except when it was written."""
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t.orders).order_by(t.orders.c.order_id))]
    for r in rows:
        del r["updated_at"]
    return rows


def clean_pass(tmp_path: Path, clock: FixedClock, lines: Sequence[bytes]) -> tuple[IngestResult, list[dict[str, Any]]]:
    """The reference: every line in one file, read once into a fresh store."""
    folder = tmp_path / "clean"
    folder.mkdir()
    (folder / "orders.jsonl").write_bytes(b"".join(lines))
    store = Store.open(f"sqlite:///{folder / 'paymon.db'}", clock=clock)
    with source(folder / "orders.jsonl", store, clock) as src:
        result = src.poll()
    table = orders_table(store)
    store.close()
    assert result.accepted > 100 and result.duplicate > 0 and result.rejected == 5
    return result, table


class RecordingStore(Store):
    """A real store that remembers the counts of every batch it committed."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.committed: list[IngestResult] = []

    def apply_events(self, events: Sequence[OrderEvent], **kw: Any) -> IngestResult:
        result = super().apply_events(events, **kw)
        self.committed.append(result)
        return result

    def total(self) -> IngestResult:
        return sum(self.committed, IngestResult())


class Stop(Exception):
    """The process stops here (between two committed batches)."""


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


def test_rename_rotation_equals_a_clean_pass(tmp_path: Path, store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines[:70]))
    src = source(log, store, clock, batch_lines=7)
    total = src.poll()
    with log.open("ab") as f:
        f.write(b"".join(lines[70:100]))  # written just before the rotation, not read yet
    os.rename(log, tmp_path / "orders.jsonl.1")
    total += src.poll()  # the new file is not there yet: the old tail waits for it
    log.write_bytes(b"".join(lines[100:]))
    total += src.poll()
    total += src.poll()
    src.close()
    assert total == expected
    assert orders_table(store) == table


def test_rename_rotation_while_stopped_equals_a_clean_pass(tmp_path: Path, store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines[:70]))
    src = source(log, store, clock, batch_lines=7)
    total = src.poll()
    src.close()                                   # paymon stops
    with log.open("ab") as f:
        f.write(b"".join(lines[70:100]))          # the shop goes on writing
    os.rename(log, tmp_path / "orders.jsonl-20261126")
    log.write_bytes(b"".join(lines[100:]))
    src = source(log, store, clock, batch_lines=7)  # paymon starts again: the old tail first, then the new file
    total += src.poll()
    src.close()
    assert total == expected
    assert orders_table(store) == table


def test_a_rotated_file_gone_while_stopped_is_said_plainly(tmp_path: Path, store: Store, clock: FixedClock,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    lines = order_log(clock)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines[:70]))
    src = source(log, store, clock)
    first = src.poll()
    src.close()
    os.rename(log, tmp_path / "elsewhere.jsonl.gz")  # compressed away: nothing beside the log has its identity
    log.write_bytes(b"".join(lines[100:]))
    src = source(log, store, clock)
    total = first + src.poll()
    src.close()
    assert "the file read before is gone" in caplog.text and "after byte" in caplog.text
    assert total.accepted + total.duplicate + total.rejected == 70 + len(lines) - 100


def test_copytruncate_equals_a_clean_pass(tmp_path: Path, store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    before, after = b"".join(lines[:80]), b"".join(lines[80:])
    assert len(after) > len(before)  # the new content outgrows the old offset before the next read
    log = tmp_path / "orders.jsonl"
    log.write_bytes(before)
    src = source(log, store, clock, batch_lines=7)
    total = src.poll()
    log.write_bytes(b"")  # logrotate copied the file away and truncated it in place
    total += src.poll()
    with log.open("ab") as f:
        f.write(after)
    total += src.poll()
    src.close()
    assert total == expected
    assert orders_table(store) == table


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-restart"])
def test_copytruncate_refilled_past_the_old_offset_is_read_again_from_the_start(
    tmp_path: Path, store: Store, clock: FixedClock, caplog: pytest.LogCaptureFixture, restart: bool,
) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    before, after = b"".join(lines[:80]), b"".join(lines[80:])
    assert len(after) > len(before)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(before)
    src = source(log, store, clock, batch_lines=7)
    total = src.poll()
    inode = log.stat().st_ino
    log.write_bytes(after)  # truncated and refilled past the old offset before paymon looked again
    assert log.stat().st_ino == inode and log.stat().st_size > len(before)
    if restart:
        src.close()
        src = source(log, store, clock, batch_lines=7)
    total += src.poll()
    total += src.poll()  # nothing new: not taken as replaced a second time
    src.close()
    assert total == expected  # nothing lost (the old size rule read from byte len(before)), nothing twice
    assert orders_table(store) == table
    assert src.replaced == 1  # the source that read it again (after a restart, the new one)
    assert caplog.text.count("was replaced in place") == 1


def test_same_size_different_content_is_a_new_file(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    old, new = line(clock, "order_created", "OLD01"), line(clock, "order_created", "NEW01")
    assert len(old) == len(new)
    log.write_text(old, encoding="utf-8")
    src = source(log, sqlite_store, clock)
    assert src.poll().accepted == 1
    log.write_text(new, encoding="utf-8")  # the same length: only its first bytes tell
    assert src.poll().accepted == 1
    assert src.poll() == IngestResult()
    src.close()
    assert src.replaced == 1
    assert [r["order_id"] for r in orders_table(sqlite_store)] == ["NEW01", "OLD01"]


def test_a_file_shorter_than_the_fingerprint_that_grows_is_the_same_file(
    tmp_path: Path, sqlite_store: Store, clock: FixedClock,
) -> None:
    log = tmp_path / "orders.jsonl"
    first = line(clock, "order_created", "G0")
    log.write_text(first + line(clock, "pay_redirect", "G0")[:30], encoding="utf-8")  # and a partial line
    src = source(log, sqlite_store, clock)
    assert src.poll().accepted == 1
    cp = sqlite_store.checkpoint("jsonl:test")
    assert cp is not None and cp.fingerprint is not None
    assert cp.fingerprint_size == cp.position == len(first.encode()) < FINGERPRINT_BYTES  # only the bytes read
    with log.open("a", encoding="utf-8") as f:
        f.write(line(clock, "pay_redirect", "G0")[30:])
        for i in range(1, 20):
            f.write(line(clock, "order_created", f"G{i}"))
    assert log.stat().st_size > FINGERPRINT_BYTES
    r = src.poll()
    src.close()
    assert (r.accepted, r.duplicate, src.replaced) == (20, 0, 0)
    cp = sqlite_store.checkpoint("jsonl:test")
    assert cp is not None and cp.fingerprint_size == FINGERPRINT_BYTES and cp.position == log.stat().st_size


def test_a_checkpoint_from_before_fingerprints_is_trusted_once_then_upgraded(tmp_path: Path, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    old, new = line(clock, "order_created", "OLD01"), line(clock, "order_created", "NEW01")
    log.write_text(old, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'paymon.db'}"
    before = Store.open(url, clock=clock, migrate=False)
    before.migrate("0005")  # the schema before fingerprints, with a checkpoint row at the end of the file
    with before.engine.begin() as conn:
        conn.execute(t.ingest_checkpoints.insert().values(
            source="jsonl:test", file_id=f"{log.stat().st_dev}:{log.stat().st_ino}", position=len(old),
            updated_at=clock.now()))
    before.close()
    store = Store.open(url, clock=clock)  # migrated: the row has no fingerprint
    cp = store.checkpoint("jsonl:test")
    assert cp is not None and (cp.position, cp.fingerprint) == (len(old), None)
    src = source(log, store, clock)
    assert src.poll() == IngestResult()  # trusted by its size: nothing read again
    cp = store.checkpoint("jsonl:test")
    assert cp is not None and cp.fingerprint is not None and cp.fingerprint_size == len(old)
    log.write_text(new, encoding="utf-8")  # from now on a same-size replacement is seen
    assert src.poll().accepted == 1
    src.close()
    store.close()
    assert src.replaced == 1


def test_restart_mid_file_equals_a_clean_pass(tmp_path: Path, store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines[:150]))
    recording = RecordingStore(store.engine, clock=clock)
    first = source(log, recording, clock, batch_lines=9)
    batches = 0

    def stop_after_three(done: int, size: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise Stop

    first.on_progress = stop_after_three
    with pytest.raises(Stop):
        first.poll()
    first.close()
    assert len(recording.committed) == 3
    with log.open("ab") as f:
        f.write(b"".join(lines[150:]))
    with source(log, recording, clock, batch_lines=9) as second:
        second.poll()
    assert recording.total() == expected
    assert orders_table(store) == table


class Crash(Exception):
    """The commit did not happen (the disk filled, the connection dropped)."""


def test_failed_commit_mid_file_equals_a_clean_pass(tmp_path: Path, store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines))
    recording = RecordingStore(store.engine, clock=clock)
    commits = 0

    def fail_the_fourth(conn: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 4:
            raise Crash

    event.listen(store.engine, "commit", fail_the_fourth)
    src = source(log, recording, clock, batch_lines=9)
    with pytest.raises(Crash):
        src.poll()
    event.remove(store.engine, "commit", fail_the_fourth)
    assert len(recording.committed) == 3
    cp = store.checkpoint("jsonl:test")
    assert cp is not None and cp.position == sum(len(x) for x in lines[:27])  # three batches of nine lines
    src.poll()  # the same source goes on after the error: the failed batch is read again
    src.close()
    assert recording.total() == expected
    assert orders_table(store) == table


KILLED_CHILD = r"""
import dataclasses, json, os, signal, sys
from datetime import datetime
from sqlalchemy import event
from monitor.clock import FixedClock
from monitor.ingest import JsonlSource
from monitor.ingest.files import binary_reason
from monitor.ingest.jsonl import FINGERPRINT_BYTES, MAX_LINE
from monitor.ingest.report import rejected_lines
from monitor.store import Store

url, log, kill_at, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), datetime.fromisoformat(sys.argv[4])


class Printing(Store):
    def apply_events(self, events, **kw):
        result = super().apply_events(events, **kw)
        print(json.dumps(dataclasses.asdict(result)), flush=True)  # only once it is committed
        return result


store = Printing.open(url, clock=FixedClock(now))
commits = 0


def kill_before_commit(conn):
    global commits
    commits += 1
    if commits == kill_at:  # rows and checkpoint written in the open transaction, not committed
        os.kill(os.getpid(), signal.SIGKILL)


event.listen(store.engine, "commit", kill_before_commit)
JsonlSource(source_id="jsonl:test", path=log, timezone="Asia/Shanghai", store=store, clock=FixedClock(now),
            channels=["c1"], batch_lines=9).poll()
"""


def test_process_killed_between_read_and_commit_equals_a_clean_pass(tmp_path: Path, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines))
    url = f"sqlite:///{tmp_path / 'paymon.db'}"
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, url, str(log), "5", clock.now().isoformat()],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    committed = [IngestResult(**json.loads(x)) for x in child.stdout.splitlines()]
    assert len(committed) == 4
    store = Store.open(url, clock=clock)
    try:
        with source(log, store, clock, batch_lines=9) as src:
            rest = src.poll()
        assert sum(committed, IngestResult()) + rest == expected
        assert orders_table(store) == table
    finally:
        store.close()


def test_reading_again_from_the_start_changes_nothing(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    lines = order_log(clock)
    expected, table = clean_pass(tmp_path, clock, lines)
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"".join(lines))
    with source(log, sqlite_store, clock, batch_lines=50) as src:
        assert src.poll() == expected
    cp = sqlite_store.checkpoint("jsonl:test")
    assert cp is not None
    sqlite_store.save_checkpoint(Checkpoint(cp.source, cp.file_id, 0))  # a checkpoint lost or rewound
    with source(log, sqlite_store, clock) as again:
        r = again.poll()
    assert (r.accepted, r.duplicate, r.rejected) == (0, expected.accepted + expected.duplicate, expected.rejected)
    assert orders_table(sqlite_store) == table


GOOD = "order_created"
#: One bad line of each kind, and the reason it is counted under.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("broken JSON", b'{"ts": "2026-11-26T02:00:00", "event": ', "bad_json"),
    ("trailing data", b'{"a": 1} {"b": 2}', "bad_json"),
    ("nested deeper than the parser goes", b"[" * 100_000 + b"]" * 100_000, "bad_json"),
    ("non-UTF-8 bytes", b'{"ts": "2026-11-26T02:00:00", "order_id": "\xff\xfe"}', "bad_utf8"),
    ("a 10 MB line", b'{"detail": "' + b"x" * (10 << 20) + b'"}', "line_too_long"),
    ("not an object", b'["order_created", "A"]', "not_an_object"),
    ("unknown event", b'{"ts": "2026-11-26T02:00:00", "event": "teleported", "order_id": "B", "channel": "c1"}',
     "unknown_event"),
    ("event that is not text", b'{"ts": "2026-11-26T02:00:00", "event": ["order_created"], "order_id": "B", '
     b'"channel": "c1"}', "unknown_event"),
    ("unknown channel", b'{"ts": "2026-11-26T02:00:00", "event": "order_created", "order_id": "B", "channel": "x"}',
     "unknown_channel"),
    ("missing ts", b'{"event": "order_created", "order_id": "B", "channel": "c1"}', "missing_ts"),
    ("missing order id", b'{"ts": "2026-11-26T02:00:00", "event": "order_created", "channel": "c1"}',
     "missing_order_id"),
    ("missing channel", b'{"ts": "2026-11-26T02:00:00", "event": "order_created", "order_id": "B"}',
     "missing_channel"),
    ("future timestamp", b'{"ts": "2026-11-26T04:00:00+00:00", "event": "order_created", "order_id": "B", '
     b'"channel": "c1"}', "future_timestamp"),
    ("timestamp beyond a datetime", b'{"ts": 1e300, "event": "order_created", "order_id": "B", "channel": "c1"}',
     "bad_timestamp"),
    ("timestamp that overflows in UTC", b'{"ts": "9999-12-31T23:59:59-01:00", "event": "order_created", '
     b'"order_id": "B", "channel": "c1"}', "bad_timestamp"),
    ("NaN is not JSON", b'{"ts": NaN, "event": "order_created", "order_id": "B", "channel": "c1"}', "bad_json"),
    ("amount too long to store", b'{"ts": "2026-11-26T02:00:00", "event": "order_created", "order_id": "B", '
     b'"channel": "c1", "amount": "0.' + b"1" * 40 + b'"}', "bad_amount"),
]


@pytest.mark.parametrize(("what", "bad", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_line_is_counted_and_skipped(what: str, bad: bytes, reason: str, tmp_path: Path,
                                                 sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_bytes(line(clock, GOOD, "A").encode() + bad + b"\n" + line(clock, GOOD, "C").encode())
    with source(log, sqlite_store, clock) as src:
        r = src.poll()
    assert r == IngestResult(2, 0, 1, {reason: 1})
    assert [row["order_id"] for row in orders_table(sqlite_store)] == ["A", "C"]


def test_all_malformed_lines_in_one_file_are_counted_and_skipped(tmp_path: Path, sqlite_store: Store,
                                                                 clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    with log.open("wb") as f:
        for i, (_, bad, _) in enumerate(MALFORMED):
            f.write(bad + b"\n" + line(clock, GOOD, f"G{i:02d}").encode())
        f.write(b"\n   \n")  # blank lines are neither events nor errors
    with source(log, sqlite_store, clock, batch_lines=4) as src:
        r = src.poll()
    reasons: dict[str, int] = {}
    for _, _, reason in MALFORMED:
        reasons[reason] = reasons.get(reason, 0) + 1
    assert r == IngestResult(len(MALFORMED), 0, len(MALFORMED), reasons)
    assert sqlite_store.order_count() == len(MALFORMED)


def test_a_long_line_still_being_written_waits_then_counts_once(tmp_path: Path, sqlite_store: Store,
                                                                clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_bytes(line(clock, GOOD, "A").encode() + b'{"detail": "' + b"x" * (3 << 20))
    src = source(log, sqlite_store, clock)
    assert src.poll() == IngestResult(1, 0, 0, {})
    assert src.poll() == IngestResult()  # still no newline: nothing read, nothing counted
    with log.open("ab") as f:
        f.write(b"x" * (2 << 20) + b'"}\n' + line(clock, GOOD, "B").encode())
    assert src.poll() == IngestResult(1, 0, 1, {"line_too_long": 1})
    assert src.poll() == IngestResult()
    src.close()


def test_whitespace_around_a_line_is_tolerated(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_bytes(b"  " + line(clock, GOOD, "A").encode()[:-1] + b" \r\n" + line(clock, GOOD, "B").encode()[:-1]
                    + b"\r\n")
    with source(log, sqlite_store, clock) as src:
        assert src.poll() == IngestResult(2, 0, 0, {})


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
        ({"event": ""}, "missing_event"),
        ({"event": ["callback_received"]}, "unknown_event"),
        ({"channel": "x" * 65}, "unknown_channel"),  # longer than any channel the store can hold
        ({"ts": float("nan")}, "bad_timestamp"),
        ({"ts": {"at": 1}}, "bad_timestamp"),
        ({"ts": "0000-01-01T00:00:00"}, "bad_timestamp"),
        ({"paid_at": "soon"}, "bad_timestamp"),
        ({"amount": "1" * 33}, "bad_amount"),
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


def test_other_spellings_of_fields_are_accepted(clock: FixedClock) -> None:
    from zoneinfo import ZoneInfo

    e = parse_event({"ts": " 2026-11-26T01:00:00.5Z ", "event": "order_created", "order_id": 1234, "channel": 7,
                     "amount": 9.9, "trade_no": "", "paid_at": "", "method": "alipay"},
                    tz=ZoneInfo("Asia/Shanghai"), now=clock.now(), channels=None)
    assert e.ts.isoformat() == "2026-11-26T01:00:00.500000+00:00"
    assert (e.order_id, e.channel, str(e.amount), e.trade_no, e.paid_at) == ("1234", "7", "9.9", None, None)


def test_decoded_amounts_are_shared_but_bounded(clock: FixedClock) -> None:
    from zoneinfo import ZoneInfo

    from monitor.ingest import events

    base = {"ts": "2026-11-26T01:00:00", "event": "order_created", "order_id": "A", "channel": "c1"}
    one = parse_event({**base, "amount": "19.90"}, tz=ZoneInfo("UTC"), now=clock.now())
    two = parse_event({**base, "amount": "19.90"}, tz=ZoneInfo("UTC"), now=clock.now())
    assert one.amount is two.amount
    for i in range(events._AMOUNTS_MAX + 10):
        parse_event({**base, "amount": f"{i}.01"}, tz=ZoneInfo("UTC"), now=clock.now())
    assert len(events._AMOUNTS) <= events._AMOUNTS_MAX


def test_field_mapping_adapts_another_shops_log(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    rec = {"time": (clock.now() - timedelta(minutes=1)).isoformat(), "event": "order_created", "sn": "X1",
           "gateway": "c1", "price": "9.90"}
    log.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    fields = {"ts": "time", "order_id": "sn", "channel": "gateway", "amount": "price", "method": "pay_type"}
    with source(log, sqlite_store, clock, fields=fields) as src:
        assert src.poll().accepted == 1
    row = sqlite_store.orders_frame(clock.now() - timedelta(hours=1)).iloc[0]
    assert (row["order_id"], row["channel"], row["amount"]) == ("X1", "c1", "9.90")


def test_a_finished_file_is_read_to_its_last_line_without_a_newline(tmp_path: Path, store: Store,
                                                                     clock: FixedClock) -> None:
    """A backfill (``complete``) reads a last line that has no newline; the follower still waits for it. A
    newline and more lines appended later are read once: nothing twice, nothing lost."""
    log = tmp_path / "orders.jsonl"
    log.write_text(line(clock, "order_created", "A") + line(clock, "order_created", "B").rstrip("\n"),
                   encoding="utf-8")
    follower = source(log, store, clock, source_id="follow")
    assert follower.poll().accepted == 1  # B may still be being written
    backfill = source(log, store, clock, source_id="backfill", complete=True)
    assert backfill.poll() == IngestResult(accepted=1, duplicate=1)  # B new, A known from the follower
    assert store.checkpoint("backfill").position == log.stat().st_size  # type: ignore[union-attr]
    with open(log, "a", encoding="utf-8") as f:
        f.write("\n" + line(clock, "order_created", "C"))
    assert backfill.poll() == IngestResult(accepted=1)  # C only: B is not read again
    assert follower.poll() == IngestResult(duplicate=2)  # B and C, both known
    backfill.close()
    follower.close()
    assert [row["order_id"] for row in orders_table(store)] == ["A", "B", "C"]


def test_a_finished_file_ending_in_an_overlong_line_is_read_to_its_end(tmp_path: Path, store: Store,
                                                                       clock: FixedClock) -> None:
    log = tmp_path / "orders.jsonl"
    log.write_bytes(line(clock, "order_created", "A").encode() + b"x" * (MAX_LINE + 10))
    with source(log, store, clock, complete=True) as src:
        result = src.poll()
    assert (result.accepted, result.reasons, result.rejected_lines) == (1, {"line_too_long": 1},
                                                                        {"line_too_long": (2,)})
    assert store.checkpoint("jsonl:test").position == log.stat().st_size  # type: ignore[union-attr]


def test_rejected_lines_are_numbered_across_batches_and_polls(tmp_path: Path, store: Store,
                                                              clock: FixedClock) -> None:
    """The first five rejected lines per reason keep their line numbers (from 1), whatever the batch size and
    however many polls it took; a backfill resuming at a checkpoint counts the lines before it."""
    log = tmp_path / "orders.jsonl"
    rows = [line(clock, "order_created", f"O{i}") for i in range(12)]
    for n in (2, 5, 6, 7, 8, 9, 11):  # line numbers of the broken lines
        rows[n - 1] = "{broken\n"
    rows[3] = "\n"  # a blank line counts as a line, and is not rejected
    rows[9] = json.dumps({"ts": "2026-11-20T10:00:00", "event": "order_created", "channel": "c1"}) + "\n"
    log.write_text("".join(rows[:8]), encoding="utf-8")
    with source(log, store, clock, batch_lines=3) as src:
        first = src.poll()
        log.write_text("".join(rows), encoding="utf-8")
        result = first + src.poll()
    assert result.reasons == {"bad_json": 7, "missing_order_id": 1}
    assert result.rejected_lines == {"bad_json": (2, 5, 6, 7, 8), "missing_order_id": (10,)}
    assert rejected_lines(result) == ("rejected 8 lines: bad_json at lines 2, 5, 6, 7, 8 and 2 more; "
                                      "missing_order_id at line 10")

    again = tmp_path / "again.jsonl"
    again.write_text("".join(rows[:8]), encoding="utf-8")
    with source(again, store, clock, source_id="first-part") as src:
        src.poll()
    cp = store.checkpoint("first-part")
    assert cp is not None
    store.save_checkpoint(Checkpoint("resumed", cp.file_id, cp.position, cp.fingerprint, cp.fingerprint_size))
    again.write_text("".join(rows), encoding="utf-8")
    with source(again, store, clock, source_id="resumed", complete=True) as src:
        assert src.poll().rejected_lines == {"bad_json": (9, 11), "missing_order_id": (10,)}
    assert rejected_lines(IngestResult()) is None


def test_binary_input_is_told_from_text() -> None:
    assert binary_reason(b'{"ts": "2026-11-20"}\n' + "订单".encode()[:-1]) is None  # a character cut at the end
    assert "NUL" in (binary_reason(b"SQLite format 3\x00") or "")
    assert "gzip" in (binary_reason(b"\x1f\x8b\x08\x00") or "")
    assert "not UTF-8" in (binary_reason(b"ok\n\xff\xfe\n") or "")
