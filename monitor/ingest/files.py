"""Whether a file given to ``paymon ingest`` can be read as a text log, before any of it is ingested.

A directory, a missing or unreadable file, or a binary one (a compressed rotation ``orders.jsonl.1.gz``, a
database file) is a mistake in the command, answered with one line, not thousands of rejected "lines". The
binary check reads the first :data:`SNIFF_BYTES`: a NUL byte or bytes that are not UTF-8 mean it is not a log.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

__all__ = ["SNIFF_BYTES", "binary_reason", "input_problem"]

#: How much of a file's start is looked at to tell text from binary.
SNIFF_BYTES = 8192


def binary_reason(head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) is not text, or None when it may be. Pure."""
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed (decompress it first, e.g. with zcat)"
    if b"\x00" in head:
        return "it holds NUL bytes (a binary file, not a text log)"
    try:
        # Incremental: a character cut in two at the end of the block is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 text (byte {exc.start} of the file is not)"
    return None


def input_problem(path: Path) -> str | None:
    """What makes ``path`` unusable as a log to backfill from, in one phrase naming it; None when it is fine."""
    if path.is_dir():
        return f"{path} is a directory (give the log files in it)"
    if not path.exists():
        return f"no such file: {path}"
    if not path.is_file():
        return f"{path} is not a regular file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read {path}: {(exc.strerror or os.strerror(exc.errno or 0)).lower()}"
    why = binary_reason(head)
    return None if why is None else f"{path} cannot be ingested: {why}"
