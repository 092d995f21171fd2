"""``paymon sim``: the simulated gateways and shop traffic for the channels of a config, on their own.

It serves every channel of ``channels.yaml`` whose endpoint is on loopback (they must share one port; that is
where the simulator listens), drives shop traffic through the channels it can create orders on, choosing them
by the weights paymon writes (the YAML routing sink's file, else ``channels.yaml``) as a shop does, writes the
order log named by the first ``jsonl`` source of ``monitor.yaml``, and plays a scenario if one is given.
Together with ``paymon run`` on the same config it is a complete local setup. On exit it can write the ground
truth (what really happened to every order) as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from monitor.config import ChannelConfig, JsonlSource, LoadedConfig, YamlSink
from monitor.errors import ConfigError, SinkError
from monitor.http import cannot_listen
from monitor.routing.yaml_file import YamlWeightSink
from monitor.sim.gateways import add_channel
from monitor.sim.scenario import Scenario, Step, play
from monitor.sim.server import SimServer
from monitor.sim.shop import Shop, ShopTraffic

__all__ = ["listen_port", "run_sim", "simulated"]

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def simulated(cfg: LoadedConfig) -> list[ChannelConfig]:
    """The channels whose endpoint is the simulator's form: ``http://127.0.0.1:PORT/<channel id>/``."""
    out = []
    for ch in cfg.channels:
        url = urlsplit(ch.endpoint or "")
        if url.hostname in LOOPBACK and url.path.rstrip("/") == f"/{ch.id}":
            out.append(ch)
    return out


def weight_file(cfg: LoadedConfig) -> YamlWeightSink:
    """Where the shop reads its weights: the file paymon's first YAML routing sink writes (seeded like paymon seeds it),
    else the channels file."""
    for sink in cfg.monitor.routing.all_sinks:
        if isinstance(sink, YamlSink):
            return YamlWeightSink(sink.path, seed=sink.seed)
    return YamlWeightSink(cfg.channels_path)


def listen_port(cfg: LoadedConfig) -> int:
    """The one loopback port the channels' endpoints point at (ConfigError when they disagree or none does)."""
    ports = {urlsplit(ch.endpoint or "").port or 80 for ch in simulated(cfg)}
    if len(ports) != 1:
        raise ConfigError(f"{cfg.channels_path}: to simulate, channel endpoints must be "
                          f"http://127.0.0.1:PORT/<channel id>/ on one port (found ports: {sorted(ports) or 'none'})")
    return ports.pop()


@contextlib.asynccontextmanager
async def _serving(port: int) -> AsyncIterator[SimServer]:
    """The simulator, started on ``port``; a port that cannot be bound is one line (exit 1), nothing started."""
    sim = SimServer(port=port)
    try:
        await sim.start()
    except OSError as exc:
        raise cannot_listen("127.0.0.1", port, exc) from None
    try:
        yield sim
    finally:
        await sim.stop()


async def _serve(cfg: LoadedConfig, scenario: Scenario | None, port: int, rate: float, truth: Path | None,
                 out: TextIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sources = [s for s in cfg.monitor.sources if isinstance(s, JsonlSource)]
    weights = weight_file(cfg)
    async with _serving(port) as sim:
        served, traffic_channels = [], []
        for ch in simulated(cfg):
            if add_channel(sim, ch):
                served.append(ch.id)
                traffic_channels.append(ch.id)
            else:
                print(f"sim: no simulated gateway for {ch.id} (kind {ch.kind}) yet; skipped", file=out)
        print(f"sim: serving {', '.join(served) or 'nothing'} on {sim.base_url}", file=out, flush=True)
        shop: Shop | None = None
        traffic: ShopTraffic | None = None
        if sources and traffic_channels:
            shop = Shop(sources[0].path)
            await shop.start()
            traffic = ShopTraffic(shop, sim, {c: 1.0 for c in traffic_channels}, rate_per_s=rate)
            await traffic.start()
            print(f"sim: shop traffic {rate:g} orders/s on {', '.join(traffic_channels)} -> {sources[0].path}",
                  file=out, flush=True)

        def said(step: Step) -> None:
            change = "reset" if step.reset and not step.set else json.dumps(step.set)
            print(f"sim: t+{step.at.total_seconds():g}s {step.channel} {change}", file=out, flush=True)

        played = asyncio.create_task(play(scenario, sim.faults, said)) if scenario is not None else None
        try:
            while not stop.is_set() and not (played is not None and played.done()):
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
                if traffic is not None:
                    try:
                        current = weights.read()
                    except SinkError as exc:
                        log.warning("sim: %s", exc)
                    else:
                        traffic.weights = {c: float(current.get(c, 0)) for c in traffic_channels}
        finally:
            if played is not None:
                played.cancel()
                await asyncio.gather(played, return_exceptions=True)
            try:
                if traffic is not None:
                    await traffic.stop()
            finally:  # the shop's server and client are closed whatever happened to the traffic
                if shop is not None:
                    await shop.stop()
        rows = [t.as_dict() for t in sim.ground_truth()]
    if truth is not None:
        truth.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"sim: ground truth of {len(rows)} orders written to {truth}", file=out)
    return 0


def run_sim(cfg: LoadedConfig, *, scenario: Scenario | None = None, port: int | None = None,
            rate: float | None = None, truth: Path | None = None, out: TextIO | None = None) -> int:
    """Run until interrupted (or the scenario ends); returns the exit code."""
    out = out if out is not None else sys.stdout
    chosen = port if port is not None else listen_port(cfg)
    per_s = rate if rate is not None else (scenario.rate if scenario and scenario.rate else 2.0)
    return asyncio.run(_serve(cfg, scenario, chosen, per_s, truth, out))
