"""Time-zone names: one check for every zone an operator writes (config fields and ``--timezone``). Pure.

A wrong zone is a common first-day mistake (``Asia/Beijing``, ``CST``, ``asia/shanghai``), so the error names
the nearest zone that exists: a small table of the usual wrong names first, then the closest IANA name.
"""

from __future__ import annotations

import difflib
import functools
from zoneinfo import ZoneInfo, available_timezones

__all__ = ["ZONE_ALIASES", "check_zone", "suggest_zone"]

#: Names operators write that are not IANA zones (lowercase, spaces kept), and the zone they mean.
ZONE_ALIASES: dict[str, str] = {
    "asia/beijing": "Asia/Shanghai",
    "asia/peking": "Asia/Shanghai",
    "beijing": "Asia/Shanghai",
    "peking": "Asia/Shanghai",
    "shanghai": "Asia/Shanghai",
    "china": "Asia/Shanghai",
    "china standard time": "Asia/Shanghai",
    "cst": "Asia/Shanghai",
    "bjt": "Asia/Shanghai",
    "utc+8": "Asia/Shanghai",
    "utc+08:00": "Asia/Shanghai",
    "gmt+8": "Asia/Shanghai",
    "+08:00": "Asia/Shanghai",
    "hong kong": "Asia/Hong_Kong",
    "hongkong": "Asia/Hong_Kong",
    "hkt": "Asia/Hong_Kong",
    "taipei": "Asia/Taipei",
    "taiwan": "Asia/Taipei",
    "tokyo": "Asia/Tokyo",
    "jst": "Asia/Tokyo",
    "singapore": "Asia/Singapore",
}


@functools.cache
def _known() -> dict[str, str]:
    """Every IANA zone name this system has, by its lowercase spelling."""
    return {name.lower(): name for name in available_timezones()}


def suggest_zone(name: str) -> str | None:
    """The zone ``name`` most likely means, or None when nothing is close."""
    key = " ".join(name.strip().lower().replace("_", " ").split())
    if key in ZONE_ALIASES:
        return ZONE_ALIASES[key]
    known = _known()
    exact = known.get(name.strip().lower())
    if exact is not None:
        return exact
    close = difflib.get_close_matches(name.strip().lower(), list(known), n=1, cutoff=0.75)
    return known[close[0]] if close else None


def check_zone(name: str) -> str:
    """``name`` when :class:`zoneinfo.ZoneInfo` knows it; else ValueError whose message suggests the nearest."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        pass
    else:
        return name
    hint = suggest_zone(name)
    advice = f"; did you mean {hint!r}?" if hint else " (expected an IANA name like 'Asia/Shanghai' or 'UTC')"
    raise ValueError(f"unknown time zone {name!r}{advice}")
