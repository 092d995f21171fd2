"""Times as operators read them: one display time zone, with its offset written out, everywhere paymon shows a
time to a person (the status table, the lost-order list, alert texts, the backtest timeline).

Stored and JSON times stay ISO 8601 in UTC; only what is printed for people goes through here. Pure.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_ZONE", "show_time", "zone_label"]

#: ``display.timezone`` when the config says nothing.
DEFAULT_ZONE = "Asia/Shanghai"


def _offset(at: datetime) -> str:
    """``+08:00`` / ``+00:00``: the offset of an aware time, always with its sign and minutes."""
    text = at.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if text else "+00:00"


def show_time(at: datetime | str | None, zone: str = DEFAULT_ZONE, *, unknown: str = "unknown") -> str:
    """``2026-11-26 11:00:00 +08:00``: an aware time (or a stored ISO text) in ``zone``, labelled with its offset
    so no reader has to guess the zone; ``unknown`` for a missing time. A naive time is taken as UTC."""
    if at is None or at == "":
        return unknown
    dt = datetime.fromisoformat(at) if isinstance(at, str) else at
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo("UTC"))
    local = dt.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M:%S} {_offset(local)}"


def zone_label(zone: str, now: datetime) -> str:
    """``Asia/Shanghai (+08:00)``: the zone's name and its offset at ``now`` (zones with summer time change it)."""
    return f"{zone} ({_offset(now.astimezone(ZoneInfo(zone)))})"
