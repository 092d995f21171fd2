"""The console sink: one line per notification on a text stream (stdout by default)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from monitor.alerts.render import render_alert, render_held, render_lost, render_sink_waiting, render_weight
from monitor.alerts.render_health import render_health
from monitor.alerts.render_lost_batch import render_lost_batch
from monitor.errors import SinkError
from monitor.timefmt import DEFAULT_ZONE, show_time

__all__ = ["ConsoleSink"]


class ConsoleSink:
    """Prints notifications. ``names`` maps channel ids to display names; every time is shown in ``timezone``
    (``display.timezone``), with its offset."""

    name = "console"

    def __init__(self, *, language: str = "zh", names: Mapping[str, str] | None = None,
                 stream: TextIO | None = None, timezone: str = DEFAULT_ZONE) -> None:
        self.language = language
        self.timezone = timezone
        self.names = dict(names or {})
        self.stream = stream if stream is not None else sys.stdout

    def send(self, payload: Mapping[str, Any]) -> None:
        """Write one notification; a closed or broken stream is a non-retryable SinkError."""
        items = payload["items"] if payload.get("type") == "group" else [payload]
        lines = []
        for item in items:
            if item.get("type") == "weight":
                text = render_weight(item, language=self.language, names=self.names)
            elif item.get("type") == "sink_waiting":
                text = render_sink_waiting(item, language=self.language, names=self.names)
            elif item.get("type") == "lost_order":
                text = render_lost(item, language=self.language, names=self.names, timezone=self.timezone)
            elif item.get("type") == "held_funds":
                text = render_held(item, language=self.language, names=self.names, timezone=self.timezone)
            elif item.get("type") == "lost_orders":
                text = render_lost_batch(item, language=self.language, names=self.names)
            elif item.get("type") == "health":
                text = render_health(item, language=self.language, timezone=self.timezone)
            else:
                text = render_alert(item, language=self.language, names=self.names)
            stamp = show_time(str(item.get("at") or "") or None, self.timezone, unknown="-")
            lines.append(f"{stamp} {text}")
        try:
            print("\n".join(lines), file=self.stream, flush=True)
        except (OSError, ValueError) as exc:
            raise SinkError(f"console: {exc}", retryable=False) from None
