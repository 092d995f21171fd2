"""Scenarios: YAML timelines of fault changes that the simulator plays while it runs.

```yaml
duration: 10m                 # stop after this long (optional: run until interrupted)
rate: 2                       # shop orders per second (optional)
steps:
  - at: 30s
    channel: epay-main
    set: {pay_probability: 0.4, callback_delay_s: 20}
  - at: 3m
    channel: epay-main
    reset: true               # back to the knobs the channel started with
```

Files are validated like the config files (unknown keys, bad durations and unknown fault knobs are errors
naming file, line and field), and every ``set`` is checked against :class:`~monitor.sim.faults.Faults` before
anything runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import logging
import re
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from monitor.config import load_model
from monitor.config.fields import ConfigModel, Duration, invalid
from monitor.errors import UsageError
from monitor.sim.faults import Faults

__all__ = ["Scenario", "Step", "check_channels", "load_scenario", "play"]

log = logging.getLogger(__name__)


class Step(ConfigModel):
    """At ``at`` after the start, change ``channel``'s fault knobs (``set``) or put them back (``reset``)."""

    at: Duration
    channel: str
    set: dict[str, float | bool] = Field(default_factory=dict)
    reset: bool = False

    @model_validator(mode="after")
    def _one_change(self) -> Step:
        if not self.set and not self.reset:
            raise invalid("a step needs 'set' (fault knobs) or 'reset: true'")
        try:
            Faults().update(**self.set)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return self


class Scenario(ConfigModel):
    """A timeline. Steps run in ``at`` order; ``duration`` (if given) ends the run."""

    duration: Duration | None = None
    rate: float | None = Field(default=None, gt=0)
    steps: tuple[Step, ...] = ()

    def channels(self) -> set[str]:
        return {s.channel for s in self.steps}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``ConfigError`` with file:line field messages otherwise)."""
    return load_model(path, Scenario)


def check_channels(scenario: Scenario, path: str | Path, known: Collection[str]) -> None:
    """Refuse a scenario naming a channel the config does not have (a typo would otherwise make its steps
    silently do nothing): ``UsageError`` with the file, the line, the name and the closest known one."""
    for i, step in enumerate(scenario.steps):
        if step.channel in known:
            continue
        close = difflib.get_close_matches(step.channel, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (channels: {', '.join(sorted(known)) or 'none'})"
        raise UsageError(f"{path}:{_line_of(path, step.channel)} steps[{i}].channel: unknown channel "
                         f"{step.channel!r}{hint}")


def _line_of(path: str | Path, channel: str) -> str:
    """The line that names ``channel`` (``?`` when it cannot be told)."""
    pattern = re.compile(r"\bchannel\s*:\s*[\"']?" + re.escape(channel) + r"[\"']?\s*(?:[,}#]|$)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return "?"
    return next((str(n) for n, line in enumerate(lines, 1) if pattern.search(line)), "?")


async def play(scenario: Scenario, faults_of: Callable[[str], Faults],
               on_step: Callable[[Step], None] | None = None) -> None:
    """Apply the steps at their times (relative to now), then wait out ``duration`` if it is set.

    ``faults_of(channel)`` returns the live knobs of a channel (``SimServer.faults``); a step naming a channel
    the simulator does not have is logged and skipped.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    initial: dict[str, dict[str, Any]] = {}
    for step in sorted(scenario.steps, key=lambda s: s.at):
        await asyncio.sleep(max(0.0, start + step.at.total_seconds() - loop.time()))
        try:
            faults = faults_of(step.channel)
        except KeyError:
            log.warning("scenario: no simulated channel %s; step at %s skipped", step.channel, step.at)
            continue
        initial.setdefault(step.channel, dataclasses.asdict(faults))
        if step.reset:
            faults.update(**initial[step.channel])
        if step.set:
            faults.update(**step.set)
        log.debug("scenario t+%ss: %s %s", int(step.at.total_seconds()), step.channel,
                 "reset" if step.reset and not step.set else step.set)
        if on_step is not None:
            on_step(step)
    if scenario.duration is not None:
        await asyncio.sleep(max(0.0, start + scenario.duration.total_seconds() - loop.time()))


def total(scenario: Scenario) -> timedelta:
    """How long the scenario runs (its duration, else its last step)."""
    last = max((s.at for s in scenario.steps), default=timedelta(0))
    return scenario.duration or last
