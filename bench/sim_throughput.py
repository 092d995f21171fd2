"""How many requests per second the gateway simulator answers on loopback, so it is never a benchmark's
bottleneck (target: at least 2,000 requests/s on this 2-core machine).

The simulator runs in its own process (``SimServer`` with one epay channel and a few thousand orders); this
process drives it with ``--connections`` keep-alive HTTP/1.1 connections over raw asyncio streams (a client
much cheaper than the server, so the server is what is measured), each sending ``api.php?act=order`` queries
back to back for ``--seconds``. Prints a table, then one JSON line with ``requests_per_s``.

    .venv/bin/python bench/sim_throughput.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

SERVER = r"""
import asyncio, random, sys
from monitor.sim.server import SimServer
from monitor.sim.faults import Faults

async def main():
    async with SimServer(rng=random.Random(1)) as sim:
        sim.add_channel("bench", pid=1001, key="bench-key-123456", faults=Faults(pay_probability=0))
        print(sim.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def worker(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            await reader.readexactly(length)
            done += 1
    finally:
        counts.append(done)
        writer.close()


async def drive(port: int, seconds: float, connections: int) -> tuple[int, float]:
    path = "/bench/api.php?act=order&pid=1001&key=bench-key-123456&out_trade_no=missing-order"
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode()
    counts: list[int] = []
    start = time.monotonic()
    await asyncio.gather(*(worker(port, request, start + seconds, counts) for _ in range(connections)))
    return sum(counts), time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        asyncio.run(drive(port, 1.0, 4))  # warm-up
        total, elapsed = asyncio.run(drive(port, args.seconds, args.connections))
    finally:
        proc.terminate()
        proc.wait(10)
    rate = total / elapsed
    print(f"{'connections':>12} {'seconds':>8} {'requests':>9} {'requests/s':>11}")
    print(f"{args.connections:>12} {elapsed:>8.1f} {total:>9} {rate:>11.0f}")
    print(json.dumps({"requests_per_s": round(rate), "connections": args.connections, "seconds": round(elapsed, 1)}))


if __name__ == "__main__":
    main()
