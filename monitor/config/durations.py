"""Durations as operators write them: ``30s``, ``5m``, ``1h30m``, ``500ms``; bare numbers are seconds.

One parser for every duration in both config files, so ``every``, ``for``, ``window`` and the retention
periods all accept exactly the same spellings and fail with the same message.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["DURATION_HINT", "parse_duration"]

#: The start of every "not a duration" message; tests and docs quote it.
DURATION_HINT = "expected a duration like '30s'"

_UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(text: str | int | float) -> timedelta:
    """Turn ``"30s"``, ``"1h30m"``, ``"500ms"`` or a number of seconds into a non-negative timedelta.

    Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; parts may be combined (``1h30m``, ``1h 30m``).
    A bare number (``30``, ``"30"``, ``1.5``) is seconds. Anything else raises ``ValueError`` whose message
    starts with ``expected a duration like '30s'``.
    """
    if isinstance(text, bool):
        raise ValueError(f"{DURATION_HINT}, got {str(text).lower()}")
    if isinstance(text, int | float):
        return _from_seconds(float(text), text)
    if not isinstance(text, str):
        raise ValueError(f"{DURATION_HINT}, got {type(text).__name__}")
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return _from_seconds(float(stripped), text)
    return _from_seconds(_sum_parts(stripped, text), text)


def _sum_parts(stripped: str, original: str) -> float:
    """Add up ``<number><unit>`` parts; the whole text must be consumed."""
    total = 0.0
    pos = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None:
            raise ValueError(f"{DURATION_HINT}, got {original!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"{DURATION_HINT}, got {original!r}")
    return total


def _from_seconds(seconds: float, original: object) -> timedelta:
    if seconds < 0:
        raise ValueError(f"{DURATION_HINT}, got {original!r} (durations cannot be negative)")
    try:
        if not math.isfinite(seconds):
            raise OverflowError
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{DURATION_HINT}, got {original!r} (far too long)") from None
