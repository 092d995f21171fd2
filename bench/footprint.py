"""Footprint of ``paymon run``: resident memory and CPU of the daemon watching N epay channels.

The simulator runs in this process; the daemon runs as its own process (``python -m monitor run``) on a
temporary config whose N channels are probed every 5 s. After a warm-up the script samples the daemon's
/proc counters for the measuring period. Prints a table, then one JSON line (``rss_mb``,
``cpu_pct_one_core``).

    .venv/bin/python bench/footprint.py [--channels 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from monitor.sim.server import SimServer

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    args = ap.parse_args()

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    sim = SimServer()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    ids = [f"ch{i:04d}" for i in range(args.channels)]
    for cid in ids:
        sim.add_channel(cid, pid="1001", key=f"bench-key-{cid}")

    with tempfile.TemporaryDirectory(prefix="paymon-bench-") as tmp:
        folder = Path(tmp)
        (folder / "monitor.yaml").write_text(
            'storage: {url: "sqlite:///paymon.db"}\nhttp: {listen: "127.0.0.1:0"}\n'
            "rules:\n  - {name: channel_down, signal: probe_failures_in_a_row, threshold: 3, actions: [notify]}\n",
            encoding="utf-8")
        lines = ["channels:"]
        for cid in ids:
            lines += [f"  - id: {cid}", "    kind: epay", "    weight: 10", f'    endpoint: "{sim.endpoint(cid)}"',
                      f'    credentials: {{pid: "1001", key: "bench-key-{cid}"}}',
                      "    probes: {query: {every: 5s, timeout: 2s}}"]
        (folder / "channels.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(folder / "monitor.yaml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(args.warmup)
            if proc.poll() is not None:
                raise SystemExit("the daemon exited during warm-up")
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1)
                peak = max(peak, rss_mb(proc.pid))
            cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
        finally:
            proc.terminate()
            proc.wait(20)
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)

    probes_per_s = args.channels / 5
    print(f"{'channels':>10} {'probes/s':>10} {'rss MB':>8} {'cpu % of one core':>18}")
    print(f"{args.channels:>10} {probes_per_s:>10.1f} {peak:>8.1f} {cpu:>18.1f}")
    print(json.dumps({"channels": args.channels, "rss_mb": round(peak, 1), "cpu_pct_one_core": round(cpu, 1)}))


if __name__ == "__main__":
    main()
