"""The YAML weight sink: reads and rewrites ``weight`` values in ``channels.yaml``, touching nothing else.

The file is parsed with a round-trip YAML parser only to *locate* each channel's ``weight`` value; the rewrite
replaces exactly those digits in the original text, so comments, key order, quotes and indentation survive
byte for byte (CRLF line endings included). The new text goes to a temporary file in the same folder, is fsynced,
and replaces the original atomically (``os.replace``): the shop never reads a half-written file. A writer killed
mid-write leaves only its temporary file behind; the next write removes such leftovers once they are old.

With a ``seed``, a missing file is first created as a copy of the seed (its folder too): a shipped example stays
untouched while paymon writes the operator's copy.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.errors import SinkError

if TYPE_CHECKING:
    from monitor.config import LoadedConfig, YamlSink

__all__ = ["YamlWeightSink", "yaml_sink"]

_INT = re.compile(r"""(["']?)(\d+)\1""")
#: A temporary file of ours this old was left by a writer that died mid-write (a live one exists for milliseconds).
STALE_TEMP_S = 600.0


def _keep_comment_column(new: str, old: str, rest: str) -> str:
    """Put ``new`` where ``old`` was, widening or narrowing the spaces before a trailing comment to keep its column."""
    quote_end = len(rest) - len(rest.lstrip("'\""))
    head, tail = rest[:quote_end], rest[quote_end:]
    stripped = tail.lstrip(" ")
    if stripped.startswith("#"):
        spaces = max(1, len(tail) - len(stripped) + len(old) - len(new))
        return f"{new}{head}{' ' * spaces}{stripped}"
    return f"{new}{rest}"


class YamlWeightSink:
    """Weights of ``channels[*].weight`` in one YAML file."""

    name = "yaml"
    readable = True
    switch = False

    def __init__(self, path: str | Path, *, seed: str | Path | None = None) -> None:
        self.path = Path(path)
        self.seed = Path(seed) if seed is not None else None
        self.key = f"yaml:{self.path}"

    def _text(self) -> str:
        """The file's text with its line endings as they are (CRLF stays CRLF); seeds a missing file first."""
        if self.seed is not None and not self.path.exists():
            self._seed(self.seed)
        try:
            return self.path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise SinkError(f"{self.path}: {exc.strerror}", retryable=True) from None
        except UnicodeDecodeError as exc:
            raise SinkError(f"{self.path}: not UTF-8 text: {exc.reason}", retryable=True) from None

    def _seed(self, seed: Path) -> None:
        """Create the missing file as a copy of ``seed``; never overwrites one another process made meanwhile."""
        try:
            data = seed.read_bytes()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".seed", dir=self.path.parent)
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot seed from {seed}: {exc.strerror}", retryable=True) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, seed.stat().st_mode & 0o777)
            os.link(tmp, self.path)  # fails if the file appeared meanwhile: the first copy wins
        except FileExistsError:
            pass
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot seed from {seed}: {exc.strerror}", retryable=True) from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _locate(self, text: str) -> dict[str, tuple[int, int, int]]:
        """channel id -> (line, column, current weight) of its ``weight`` value."""
        try:
            doc: Any = YAML(typ="rt").load(text)
        except YAMLError as exc:
            raise SinkError(f"{self.path}: cannot parse: {exc}", retryable=True) from None
        spots: dict[str, tuple[int, int, int]] = {}
        for item in (doc or {}).get("channels") or []:
            if "id" in item and "weight" in item:
                line, col = item.lc.value("weight")
                spots[str(item["id"])] = (line, col, int(item["weight"]))
        return spots

    def read(self) -> dict[str, int]:
        """Current weight of every channel in the file."""
        text = self._text()
        return {ch: w for ch, (_, _, w) in self._locate(text).items()}

    def write(self, weights: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """Set the given weights; returns {channel: (old, new)} for the values that changed."""
        text = self._text()
        spots = self._locate(text)
        missing = sorted(set(weights) - set(spots))
        if missing:
            raise SinkError(f"{self.path}: no weight for channel(s) {', '.join(missing)}", retryable=False)
        lines = text.splitlines(keepends=True)
        changed: dict[str, tuple[int, int]] = {}
        for ch, new in weights.items():
            line, col, old = spots[ch]
            if old == new:
                continue
            if new < 0:
                raise SinkError(f"refusing negative weight {new} for {ch}", retryable=False)
            src = lines[line]
            m = _INT.match(src, col)
            if m is None:  # pragma: no cover - the parser said an integer is there
                raise SinkError(f"{self.path}:{line + 1}: weight of {ch} is not a plain integer", retryable=False)
            lines[line] = src[: m.start(2)] + _keep_comment_column(str(new), m.group(2), src[m.end(2) :])
            changed[ch] = (old, new)
        if changed:
            self._replace("".join(lines))
        return changed

    def _sweep(self) -> None:
        """Remove temporary files that killed writers left beside the file, once older than STALE_TEMP_S."""
        cutoff = time.time() - STALE_TEMP_S
        for leftover in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass  # gone meanwhile, or not ours to remove: harmless either way

    def apply(self, weights: Mapping[str, int], now: datetime) -> dict[str, str]:
        """The routing stage's write (:class:`~monitor.routing.base.WeightSink`): a file never waits."""
        self.write(weights)
        return {}

    def close(self) -> None:
        """Nothing to release: every read and write opens the file anew."""

    def _replace(self, text: str) -> None:
        folder = self.path.parent
        self._sweep()
        mode = self.path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise SinkError(f"{self.path}: cannot replace: {exc.strerror}", retryable=True) from None
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def yaml_sink(sink: YamlSink, cfg: LoadedConfig, store: object) -> YamlWeightSink:
    """The ``yaml`` sink of the routing config (the sink registry's factory)."""
    return YamlWeightSink(sink.path, seed=sink.seed)
