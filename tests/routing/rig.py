"""paymon built from a config folder and driven cycle by cycle on a fixed clock, as the routing sink tests use it:
the console's lines are captured, probe results are added by hand, and a restart rebuilds everything from the
same folder and database."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from monitor.cli import App, build_app
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.metrics.prom import Metrics
from monitor.models import ProbeResult


class AppRig:
    """``monitor`` and ``channels`` are the two files' texts; ``env`` what ``${NAME}`` reads."""

    def __init__(self, folder: Path, clock: FixedClock, monitor: str, channels: str,
                 env: Mapping[str, str] | None = None) -> None:
        (folder / "var").mkdir(parents=True, exist_ok=True)
        (folder / "monitor.yaml").write_text(monitor, encoding="utf-8")
        (folder / "channels.yaml").write_text(channels, encoding="utf-8")
        self.folder, self.clock, self.env = folder, clock, dict(env or {})
        self.out = io.StringIO()
        self.app = self.start()

    def start(self) -> App:
        cfg = load_config(self.folder / "monitor.yaml", env=self.env)
        return build_app(cfg, clock=self.clock, stream=self.out, metrics=Metrics())

    def restart(self) -> None:
        self.close()
        self.app = self.start()

    def close(self) -> None:
        self.app.pipeline.close()
        self.app.store.close()

    def probes(self, channel: str, *outcomes: str) -> None:
        """One query probe result per outcome, a second apart."""
        for o in outcomes:
            self.clock.advance(1)
            self.app.store.add_probe_results([ProbeResult(channel, "query", o, 0.1, self.clock.now())])

    def cycle(self) -> list[str]:
        """Run a cycle; return the notification lines it printed (without their time stamp)."""
        before = len(self.out.getvalue().splitlines())
        self.app.pipeline.cycle()
        return [line.split(" ", 3)[3] for line in self.out.getvalue().splitlines()[before:]]
