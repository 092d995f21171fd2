"""One full round of query probes across N epay channels whose gateway answers after 200 ms.

The simulator runs in its own process with N channels (``latency_s=0.2``); this process builds the daemon's own
probe path (``Daemon.probe_all``: adapters, the shared HTTP client, the global concurrency limit, storing every
result in SQLite and publishing metrics) and times one round for each N. The ideal is one gateway latency
(200 ms) if every probe ran at once. Prints a table, then one JSON line for the largest N.

    .venv/bin/python bench/probe_fanout.py [--channels 100 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r"""
import asyncio, random, sys
from monitor.sim.server import SimServer
from monitor.sim.faults import Faults

async def main(n):
    async with SimServer(rng=random.Random(1)) as sim:
        for i in range(n):
            sim.add_channel(f"ch{i:04d}", pid=1001, key=f"bench-key-{i:04d}", faults=Faults(latency_s=0.2))
        print(sim.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(int(sys.argv[1])))
"""


def config(folder: Path, port: int, n: int) -> Path:
    (folder / "monitor.yaml").write_text('storage: {url: "sqlite:///paymon.db"}\nhttp: {enabled: false}\n',
                                         encoding="utf-8")
    lines = ["channels:"]
    for i in range(n):
        cid = f"ch{i:04d}"
        lines += [f"  - id: {cid}", "    kind: epay", "    weight: 1",
                  f'    endpoint: "http://127.0.0.1:{port}/{cid}/"',
                  f'    credentials: {{pid: "1001", key: "bench-key-{i:04d}"}}',
                  "    probes: {query: {every: 30s, timeout: 5s}}"]
    (folder / "channels.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "monitor.yaml"


async def one_round(cfg_path: Path) -> tuple[float, float, dict[str, int]]:
    from monitor.cli import build_app
    from monitor.config import load_config
    from monitor.daemon import Daemon, probe_summary

    cfg = load_config(cfg_path, env={})
    app = build_app(cfg)
    async with Daemon(cfg, app.pipeline, app.store, clock=app.clock, metrics=app.metrics) as daemon:
        await daemon.probe_all()  # warm-up: connections, imports, the first SQLite writes
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = await daemon.probe_all()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    app.pipeline.close()
    app.store.close()
    return wall, cpu, dict(probe_summary(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args()
    rows = []
    for n in args.channels:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(n)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            with tempfile.TemporaryDirectory(prefix="paymon-fanout-") as tmp:
                wall, cpu, outcomes = asyncio.run(one_round(config(Path(tmp), port, n)))
        finally:
            proc.terminate()
            proc.wait(10)
        if outcomes != {"ok": n}:
            raise SystemExit(f"not every probe was ok: {outcomes}")
        rows.append((n, wall, n / wall, cpu / n * 1000))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'channels':>9} {'round s':>8} {'ideal s':>8} {'probes/s':>9} {'cpu s/1000':>11}")
    for n, wall, rate, cpu1000 in rows:
        print(f"{n:>9} {wall:>8.3f} {0.2:>8.3f} {rate:>9.0f} {cpu1000:>11.2f}")
    print(f"peak RSS of the probing process: {peak:.0f} MB")
    n, wall, rate, cpu1000 = rows[-1]
    print(json.dumps({"channels": n, "round_s": round(wall, 3), "ideal_s": 0.2, "probes_per_s": round(rate),
                      "cpu_s_per_1000": round(cpu1000, 2), "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()
