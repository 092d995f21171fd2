"""Advisory file locks per store: one paymon running per store, and one writer of routing weights at a time.

A lock is an ``flock`` on a file beside a SQLite store (``paymon.lock``, ``paymon.routing.lock``), or in the
temporary folder, named by a digest of the store URL, for a server database. The kernel releases it when the
process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from monitor.errors import LockedError

__all__ = ["ROUTING_WAIT_S", "file_lock", "lock_path", "routing_lock"]

#: How long a routing writer (a cycle, ``paymon weights``) waits for the other to finish before giving up.
ROUTING_WAIT_S = 10.0


def lock_path(url: str, suffix: str = ".lock") -> Path:
    """The lock file of the store at ``url``; its folder exists."""
    if url.startswith("sqlite:////"):
        path = Path(url.removeprefix("sqlite:///")).with_suffix(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"paymon-{digest}{suffix}"


@contextlib.contextmanager
def file_lock(path: Path, *, busy: str, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``wait`` seconds for it, then raise :class:`LockedError`
    with ``busy`` (and the path)."""
    with open(path, "a+") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(f"{busy} (lock {path})") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def routing_lock(url: str, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
    """The lock a cycle's routing stage and ``paymon weights set|restore`` both hold while they read the rows and
    the sink and write them back, so neither overwrites the other's change with a stale copy. Waits ``wait``
    seconds (default :data:`ROUTING_WAIT_S`) for it."""
    return file_lock(lock_path(url, ".routing.lock"), wait=ROUTING_WAIT_S if wait is None else wait,
                     busy="another paymon is changing routing weights on this store; try again")
