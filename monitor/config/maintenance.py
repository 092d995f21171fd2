"""Maintenance windows of a channel (``channels[].maintenance`` in channels.yaml), and whether one is open now.

A window is either one-off (``start`` and ``end``, wall-clock times in the channel's ``timezone``) or recurring
(``every: daily`` or ``every: weekly`` with ``day``, starting ``at`` a wall-clock time, lasting ``for``). While a
window is open the channel's alerts are recorded but not sent, its state is ``maintenance``, and with ``drain:
true`` its routing weight is taken to 0 for the window (the usual guards apply) and restored afterwards.

```yaml
maintenance:
  - {start: "2026-12-01 02:00", end: "2026-12-01 04:00", drain: true}
  - {every: daily, at: "03:00", for: 30m}
  - {every: weekly, day: sun, at: "02:00", for: 2h}
```
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, model_validator

from monitor.config.fields import ConfigModel, PositiveDuration, invalid

__all__ = ["DAYS", "MaintenanceWindow", "open_window"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _wall(text: str, what: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    raise invalid(f"{what}: expected a wall-clock time like '2026-12-01 02:00', got {text!r}")


class MaintenanceWindow(ConfigModel):
    """One maintenance window (see the module docstring)."""

    start: str | None = None
    end: str | None = None
    every: Literal["daily", "weekly"] | None = None
    day: Day | None = None
    at: str | None = None
    for_: PositiveDuration | None = Field(default=None, alias="for")
    drain: bool = False

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    @model_validator(mode="after")
    def _one_shape(self) -> MaintenanceWindow:
        if self.every is None:
            if self.start is None or self.end is None or self.at or self.for_ or self.day:
                raise invalid("a one-off window needs 'start' and 'end' (a recurring one: 'every', 'at', 'for')")
            if _wall(self.end, "end") <= _wall(self.start, "start"):
                raise invalid("'end' must be after 'start'")
            return self
        if self.start is not None or self.end is not None or self.at is None or self.for_ is None:
            raise invalid("a recurring window needs 'every', 'at' and 'for' (and no 'start'/'end')")
        if (self.every == "weekly") != (self.day is not None):
            raise invalid("'day' goes with 'every: weekly' (and only with it)")
        try:
            time.fromisoformat(self.at)
        except ValueError:
            raise invalid(f"at: expected a time of day like '03:00', got {self.at!r}") from None
        if self.for_ > (timedelta(days=1) if self.every == "daily" else timedelta(days=7)):
            raise invalid("'for' is longer than the period it repeats in")
        return self

    def is_open(self, now: datetime, tz: ZoneInfo) -> bool:
        """Whether ``now`` (aware) falls inside this window, read in the channel's time zone."""
        local = now.astimezone(tz).replace(tzinfo=None)
        if self.every is None:
            assert self.start is not None and self.end is not None
            return _wall(self.start, "start") <= local < _wall(self.end, "end")
        assert self.at is not None and self.for_ is not None
        at = time.fromisoformat(self.at)
        period = timedelta(days=1) if self.every == "daily" else timedelta(days=7)
        # The latest start at or before now, then: is now within for_ of it?
        start = datetime.combine(local.date(), at)
        if self.every == "weekly":
            assert self.day is not None
            start -= timedelta(days=(local.weekday() - DAYS.index(self.day)) % 7)
        if start > local:
            start -= period
        return start <= local < start + self.for_


def open_window(windows: Iterable[MaintenanceWindow], tz: str, now: datetime) -> MaintenanceWindow | None:
    """The first window open at ``now``, if any."""
    zone = ZoneInfo(tz)
    for window in windows:
        if window.is_open(now, zone):
            return window
    return None
