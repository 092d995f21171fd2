"""What the reconciler tests over real HTTP share: a config folder, the simulator, the simulated shop, paymon's
fixed clock, and paymon built from the folder's config exactly as ``paymon run`` builds it.

Each test module writes its own configs (``write_configs``) and adds the channels it needs to the simulator; this
base (re)builds the app, runs a reconciliation round and reads the console sink's lines.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from monitor.cli import App, build_app
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.metrics.prom import Metrics
from monitor.probes.base import ProbeContext
from monitor.reconcile.reconciler import ReconcileReport
from monitor.sim import Shop, SimServer

__all__ = ["SimEnv", "paymon_clock"]


def paymon_clock() -> FixedClock:
    """paymon's clock: the simulator and the shop run on the real clock (the gateway stamps pay times with it);
    paymon's is fixed a little later and moved by hand."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=6))


@dataclass
class SimEnv:
    folder: Path
    sim: SimServer
    shop: Shop
    clock: FixedClock
    client: httpx.AsyncClient
    out: io.StringIO
    app: App | None = None

    def build(self) -> App:
        """paymon from ``monitor.yaml`` in the folder (the previous app, if any, closed first)."""
        self.close()
        cfg = load_config(self.folder / "monitor.yaml", env={})
        self.app = build_app(cfg, clock=self.clock, stream=self.out, metrics=Metrics())
        return self.app

    def close(self) -> None:
        if self.app is not None:
            self.app.pipeline.close()
            self.app.store.close()
            self.app = None

    async def reconcile(self) -> ReconcileReport:
        """One ingest, then one reconciliation round over every reconciled channel."""
        assert self.app is not None and self.app.reconciler is not None
        self.app.pipeline.ingest()
        ctx = {ch: ProbeContext(self.client, self.clock, self.app.cfg.redactor) for ch in self.app.reconciler.queriers}
        return await self.app.reconciler.run(ctx)

    def lines(self) -> list[str]:
        """The console sink's lines, without their timestamps."""
        return [line.split(" ", 3)[3] for line in self.out.getvalue().splitlines()]
