"""The ``jsonl`` source: follows the shop's order event log like ``tail -F``.

Each call to :meth:`JsonlSource.poll` reads the complete lines appended since the checkpoint and commits the
parsed events *together with* the new checkpoint (file identity + byte offset), so a crash re-reads at most the
uncommitted lines and the store's per-order merge makes that re-read a no-op. A partial last line waits for its
newline, except in a source built ``complete=True`` (a backfill of a finished file), which reads a last line
without one and puts its checkpoint after it: a newline appended later is then an empty line, so lines the writer
adds afterwards are read once, and none twice. Rejected lines are counted per reason, and the first few of each are
named by line number (known when reading starts at the file's beginning, follows a previous poll, or is a
backfill, which counts the lines before its checkpoint).

Rotation: when the path names a new file (rename rotation), the rest of the old file is read through the
descriptor still open on it, then reading starts at the new file's beginning. Copytruncate (the file emptied in
place, same inode) is seen two ways: the file is shorter than the checkpoint's offset, or its first bytes differ
from the checkpoint's fingerprint (a hash of the first up to :data:`FINGERPRINT_BYTES` bytes already read, saved
with every checkpoint), which catches a file refilled past the old offset before paymon looked again. Either
way the file is read again from the start, logged once and counted in :attr:`JsonlSource.replaced`. The
fingerprint covers only bytes already read, so a file shorter than that which grows is the same file. A
checkpoint saved before fingerprints existed is trusted by the size rule once, and gets its fingerprint then.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import orjson

from monitor.clock import Clock
from monitor.ingest.events import Rejected, parse_event, remap
from monitor.models import REJECTED_LINES_KEPT, IngestResult, OrderEvent
from monitor.store import Checkpoint, Store

__all__ = ["FINGERPRINT_BYTES", "MAX_LINE", "JsonlSource", "fingerprint"]

log = logging.getLogger(__name__)

#: Lines longer than this are rejected (``line_too_long``) without being held in memory whole.
MAX_LINE = 1 << 20
#: The file is read in blocks this large: a line that may be kept fits in one with its newline, a longer one never.
_BLOCK = MAX_LINE + 1


#: How many of a file's first bytes its checkpoint fingerprint covers (at most; fewer while the file is shorter).
FINGERPRINT_BYTES = 1024


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def fingerprint(fh: IO[bytes], size: int) -> str | None:
    """sha256 (hex) of the first ``size`` bytes of ``fh``, or None when the file now has fewer. Reads with
    ``pread``, so the handle's position is left alone."""
    data = b""
    while len(data) < size:
        chunk = os.pread(fh.fileno(), size - len(data), len(data))
        if not chunk:
            return None
        data += chunk
    return hashlib.sha256(data).hexdigest()


class JsonlSource:
    """Reads one JSONL file into the store. ``source_id`` names its checkpoint."""

    kind = "jsonl"

    def __init__(self, *, source_id: str, path: str | Path, timezone: str, store: Store, clock: Clock,
                 channels: Collection[str] | None = None, fields: Mapping[str, str] | None = None,
                 batch_lines: int = 5000, complete: bool = False) -> None:
        self.source_id = source_id
        self.path = Path(path)
        self.tz = ZoneInfo(timezone)
        self.store = store
        self.clock = clock
        self.channels = frozenset(channels) if channels is not None else None
        self.fields = dict(fields or {})
        self.batch_lines = batch_lines
        #: The file is finished (a backfill): a last line without a newline is read, not waited for.
        self.complete = complete
        #: (file identity, byte offset, lines before it) where the last batch ended: the next one goes on counting.
        self._lines_at: tuple[str, int, int] | None = None
        #: Called after every committed batch with (bytes read so far, file size): progress for backfills.
        self.on_progress: Callable[[int, int], None] | None = None
        self._fh: IO[bytes] | None = None
        self._fh_id = ""
        #: How many times the file was found replaced in place (copytruncate) and read again from the start.
        self.replaced = 0

    def __enter__(self) -> JsonlSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file kept open between polls."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open_current(self) -> tuple[IO[bytes], str] | None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls to survive rename rotation
        except FileNotFoundError:
            return None
        return fh, _identity(os.fstat(fh.fileno()))

    def poll(self) -> IngestResult:
        """Ingest everything complete that is new; returns the counts of this call."""
        total = IngestResult()
        cp = self.store.checkpoint(self.source_id)
        current = self._open_current()
        if current is None:
            return total
        fh, file_id = current
        # Rename rotation: finish the file we were reading before switching to the new one.
        if self._fh is not None and self._fh_id != file_id and cp is not None and cp.file_id == self._fh_id:
            total += self._drain(self._fh, self._fh_id, cp.position)
            self.close()
            cp = None
        # The same after a restart: the file of the checkpoint was renamed while paymon was down. Its tail is
        # read from the renamed file beside it (``orders.jsonl.1``, ``orders.jsonl-20261126``) when it is there.
        elif self._fh is None and cp is not None and cp.file_id not in ("", file_id):
            total += self._finish_rotated(cp)
            cp = None
        if self._fh is None or self._fh_id != file_id:
            self.close()
            self._fh, self._fh_id = fh, file_id
        else:
            fh.close()
        position = cp.position if cp is not None and cp.file_id == file_id else 0
        if cp is not None and position > 0:
            position = self._check_same_file(self._fh, cp)
        total += self._drain(self._fh, file_id, position)
        return total

    def _check_same_file(self, fh: IO[bytes], cp: Checkpoint) -> int:
        """Where to go on reading the checkpoint's file: at its offset, or at 0 when it was replaced in place
        (shorter than the offset, or first bytes unlike its fingerprint). A checkpoint without a fingerprint
        (saved before there were any) is trusted by the size rule alone, and gets its fingerprint now."""
        size = os.fstat(fh.fileno()).st_size
        if cp.position > size:
            why = f"it is shorter ({size} bytes) than the offset read up to ({cp.position})"
        elif cp.fingerprint is not None and fingerprint(fh, cp.fingerprint_size) != cp.fingerprint:
            why = f"its first {cp.fingerprint_size} bytes differ from those read before"
        else:
            if cp.fingerprint is None:
                self.store.save_checkpoint(self._checkpoint(fh, cp.file_id, cp.position))
            return cp.position
        self.replaced += 1
        log.warning("%s was replaced in place (copytruncate: %s); reading it from the start", self.path, why)
        # Saved now, not with the next batch: the file may have grown past the old offset by the next poll.
        self.store.save_checkpoint(self._checkpoint(fh, cp.file_id, 0))
        return 0

    def _checkpoint(self, fh: IO[bytes], file_id: str, position: int) -> Checkpoint:
        """The checkpoint at ``position``, fingerprinted over the first bytes read (up to ``position``)."""
        size = min(position, FINGERPRINT_BYTES)
        return Checkpoint(self.source_id, file_id, position, fingerprint(fh, size), size)

    def _finish_rotated(self, cp: Checkpoint) -> IngestResult:
        """Read the rest of the checkpoint's file, found by its identity among the files beside ``path``."""
        for sibling in sorted(self.path.parent.glob(self.path.name + "*")):
            try:
                if not sibling.is_file() or _identity(sibling.stat()) != cp.file_id:
                    continue
                with open(sibling, "rb") as old:
                    if _identity(os.fstat(old.fileno())) != cp.file_id:
                        continue
                    log.info("%s was rotated while paymon was stopped; reading the rest of %s from byte %d",
                             self.path, sibling, cp.position)
                    return self._drain(old, cp.file_id, cp.position)
            except OSError:
                continue
        log.warning("%s was rotated while paymon was stopped and the file read before is gone (compressed or "
                    "deleted): lines written to it after byte %d were not read", self.path, cp.position)
        return IngestResult()

    def _drain(self, fh: IO[bytes], file_id: str, position: int) -> IngestResult:
        total = IngestResult()
        line = self._line_number(fh, file_id, position)
        while True:
            result, position, more = self._batch(fh, file_id, position, line)
            if line is not None:
                line += result.lines_read
                self._lines_at = (file_id, position, line)
            total += result.counts
            if self.on_progress is not None:
                self.on_progress(position, os.fstat(fh.fileno()).st_size)
            if not more:
                return total

    def _line_number(self, fh: IO[bytes], file_id: str, position: int) -> int | None:
        """How many lines come before ``position``: 0 at the start, carried on from the previous batch, or
        counted in a backfill; None when unknown (a follower resuming mid-file does not read it all again)."""
        if position == 0:
            return 0
        if self._lines_at is not None and self._lines_at[:2] == (file_id, position):
            return self._lines_at[2]
        if not self.complete:
            return None
        lines, done = 0, 0
        while done < position:
            chunk = os.pread(fh.fileno(), min(_BLOCK, position - done), done)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
        return lines

    def parse_line(self, text: str, now: datetime) -> OrderEvent:
        """One complete line → an event, or :class:`Rejected` with a reason. Subclasses read other formats."""
        try:
            rec = orjson.loads(text)
        except orjson.JSONDecodeError:  # also NaN/Infinity, integers beyond 64 bits, nesting beyond 1024
            raise Rejected("bad_json") from None
        if type(rec) is not dict:
            raise Rejected("not_an_object")
        if self.fields:
            rec = remap(rec, self.fields)
        return parse_event(rec, tz=self.tz, now=now, channels=self.channels)

    def _read_lines(self, fh: IO[bytes], position: int) -> tuple[list[bytes | None], int]:
        """Up to ``batch_lines`` complete lines from ``position`` (without their newlines) and the position after
        them. A line longer than :data:`MAX_LINE` is skipped on the way and stands as None (it counts as a line).
        In a ``complete`` file the last line needs no newline."""
        lines: list[bytes | None] = []
        while (room := self.batch_lines - len(lines)) > 0:
            fh.seek(position)
            block = fh.read(_BLOCK)
            parts: list[bytes | None] = list(block.split(b"\n", room))
            tail = parts.pop()  # after the last newline split at: a partial line, or lines left for later
            if parts:
                lines += parts
                assert tail is not None
                position += len(block) - len(tail)
                continue
            if len(block) < _BLOCK:
                if self.complete and block:  # the file's last line, without a newline
                    lines.append(block)
                    position += len(block)
                break  # nothing new, or a partial last line: wait for its newline
            # A line longer than a block: skip to its end without holding it.
            skipped = len(block)
            while True:
                chunk = fh.read(_BLOCK)
                nl = chunk.find(b"\n")
                if nl >= 0:
                    skipped += nl + 1
                    break
                if not chunk:
                    if not self.complete:
                        return lines, position  # still being written; come back later
                    break  # the file's last line
                skipped += len(chunk)
            position += skipped
            lines.append(None)
        return lines, position

    def _batch(self, fh: IO[bytes], file_id: str, position: int, line: int | None
                ) -> tuple[_Batch, int, bool]:
        """Read up to ``batch_lines`` complete lines from ``position``; commit them with the new position.
        ``line`` is how many lines come before ``position`` (None: unknown, no line numbers are kept)."""
        lines, position = self._read_lines(fh, position)
        if not lines:
            return _Batch(IngestResult(), 0), position, False
        events: list[OrderEvent] = []
        append = events.append
        reasons: Counter[str] = Counter()
        numbers: dict[str, list[int]] = {}
        now = self.clock.now()
        parse = self.parse_line
        for index, raw in enumerate(lines, start=1):
            reason = None
            if raw is None:
                reason = "line_too_long"
            else:
                text = raw.strip()
                if not text:
                    continue
                try:
                    append(parse(text.decode("utf-8"), now))
                    continue
                except UnicodeDecodeError:
                    reason = "bad_utf8"
                except Rejected as r:
                    reason = r.reason
            reasons[reason] += 1
            if line is not None and len(kept := numbers.setdefault(reason, [])) < REJECTED_LINES_KEPT:
                kept.append(line + index)
        result = self.store.apply_events(
            events, checkpoint=self._checkpoint(fh, file_id, position),
            rejected=sum(reasons.values()), reasons=dict(reasons),
        )
        if numbers:
            result = replace(result, rejected_lines={k: tuple(v) for k, v in numbers.items()})
        return _Batch(result, len(lines)), position, len(lines) >= self.batch_lines


class _Batch:
    """One committed batch: its counts and how many lines it read (blank and too-long ones included)."""

    __slots__ = ("counts", "lines_read")

    def __init__(self, counts: IngestResult, lines_read: int) -> None:
        self.counts = counts
        self.lines_read = lines_read
