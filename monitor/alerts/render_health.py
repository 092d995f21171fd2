"""Text for the daemon's own health notifications (evaluation cycles failing, and recovered). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.timefmt import DEFAULT_ZONE, show_time

__all__ = ["render_health"]


def render_health(p: Mapping[str, Any], *, language: str = "zh", timezone: str = DEFAULT_ZONE) -> str:
    """One line for a health payload (``monitor.store.health``): ``evaluation_failing`` names since when and why
    (no alert is evaluated and no weight moves until a cycle succeeds); ``recovered`` says how many failed."""
    since, reason = show_time(str(p.get("since") or "") or None, timezone, unknown="?"), p.get("reason") or "?"
    if p.get("kind") == "recovered":
        n = int(p.get("failures") or 0)
        if language == "zh":
            return f"✅ paymon 评估周期已恢复 (自 {since} 起连续失败 {n} 次)"
        return f"✅ paymon evaluation cycles RECOVERED ({n} failed in a row since {since})"
    if language == "zh":
        return f"🔴 paymon 评估周期失败 (自 {since} 起): {reason}；恢复前不会评估告警、不会调整权重"
    return (f"🔴 paymon evaluation cycles FAILING since {since}: {reason}; no alert is evaluated and no weight "
            "changes until a cycle succeeds")
