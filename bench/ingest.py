"""End-to-end JSONL ingestion: a million order events through ``JsonlSource.poll()`` into a fresh SQLite store.

This process writes a synthetic order log in the order-event format (see the README's "Order events") to a
temporary folder (about 200,000 orders on
five channels, each with a realistic lifecycle: created, redirected, a callback, sometimes a retried or an unverified
one, paid, delivered, or expired when the buyer walked away; events of concurrent orders interleave in time order;
about one line in a thousand is malformed). Two child processes then read it, so that neither the generator's
memory nor the other child's counts towards what each reports:

- ``parse``: the floor, a bare loop that reads the lines and parses each with ``orjson.loads`` (the parser the
  source uses), nothing else;
- ``ingest``: ``JsonlSource.poll()`` on a fresh ``Store.open("sqlite:///…")``: parsing, validation, merging into
  order rows and a checkpoint commit per batch, the very path the daemon and ``paymon ingest`` run.

``ingest_s`` is the wall time of that one ``poll()`` (imports and migrations not included); ``peak_rss_mb`` is the
``ru_maxrss`` of the ingest child: the interpreter and its imports (pandas among them, through the store), which the
table also shows on their own, plus the ingest itself.
Prints a table, then one JSON line (``events``, ``ingest_s``, ``events_per_s``, ``bare_parse_s``,
``peak_rss_mb``).

    .venv/bin/python bench/ingest.py [--events 1000000] [--batch-lines N]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

CHANNELS = ("epay-main", "epay-backup", "alipay-f2f", "wxpay", "usdt")
METHODS = {"epay-main": "alipay", "epay-backup": "wxpay", "alipay-f2f": "alipay", "wxpay": "wxpay", "usdt": "usdt"}
SHOP_TZ = timezone(timedelta(hours=8))
MALFORMED = (
    "{broken json",
    '{"ts": "2026-11-20T10:00:00+08:00", "event": "teleported", "order_id": "X", "channel": "usdt"}',
    '{"event": "order_created", "order_id": "Y", "channel": "usdt"}',
    '["not", "an", "object"]',
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, SHOP_TZ).isoformat(timespec="milliseconds")


def lifecycle(rng: random.Random, n: int, created: float) -> list[tuple[float, dict[str, object]]]:
    """The events of one order, as (unix time, record) pairs."""
    oid = f"P{n:08d}"
    channel = rng.choice(CHANNELS)
    base: dict[str, object] = {"order_id": oid, "channel": channel}
    out: list[tuple[float, dict[str, object]]] = [
        (created, {**base, "event": "order_created", "method": METHODS[channel],
                   "amount": f"{rng.choice((9.9, 19.9, 29.9, 49.0, 99.0, 199.0)):.2f}"}),
    ]
    if rng.random() < 0.05:  # never reached the pay page
        out.append((created + 900, {**base, "event": "order_expired"}))
        return out
    t = created + rng.uniform(0.5, 5)
    out.append((t, {**base, "event": "pay_redirect"}))
    if rng.random() < 0.18:  # walked away
        out.append((created + 900, {**base, "event": "order_expired"}))
        return out
    paid = t + rng.uniform(10, 120)
    cb = paid + rng.expovariate(1 / 3)
    trade = f"T{n:010d}"
    if rng.random() < 0.03:  # a forged or misconfigured notify first
        out.append((cb - 1, {**base, "event": "callback_received", "verified": False, "trade_no": trade}))
    callback = {**base, "event": "callback_received", "verified": True, "trade_no": trade, "paid_at": _iso(paid)}
    out.append((cb, callback))
    if rng.random() < 0.1:  # the gateway retried its notify
        out.append((cb + rng.uniform(5, 60), dict(callback)))
    out.append((cb + 0.05, {**base, "event": "order_paid"}))
    out.append((cb + rng.uniform(0.1, 2), {**base, "event": "order_delivered", "detail": "1 card"}))
    return out


def lines(events: int, seed: int = 7) -> Iterator[str]:
    """``events`` JSONL lines, in time order, ending a day or more ago (so none is "in the future")."""
    rng = random.Random(seed)
    start = time.time() - 86400 - events * 0.4  # ~0.3 s of shop time per event: ~8 orders a minute per channel
    heap: list[tuple[float, int, dict[str, object]]] = []
    seq = n = written = 0
    created = start
    while written < events:
        created += rng.expovariate(1 / 1.5)
        for t, rec in lifecycle(rng, n, created):
            heapq.heappush(heap, (t, seq, rec))
            seq += 1
        n += 1
        while heap and heap[0][0] <= created and written < events:
            t, _, rec = heapq.heappop(heap)
            if rng.random() < 0.001:
                yield rng.choice(MALFORMED)
            else:
                yield json.dumps({"ts": _iso(t), **rec}, separators=(",", ":"))
            written += 1


def generate(path: Path, events: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for text in lines(events):
            f.write(text)
            f.write("\n")


def child_parse(path: Path) -> dict[str, object]:
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
            n += 1
    return {"lines": n, "seconds": time.perf_counter() - t0}


def child_ingest(path: Path, db: Path, batch_lines: int | None) -> dict[str, object]:
    from monitor.clock import SystemClock
    from monitor.ingest import JsonlSource
    from monitor.store import Store

    store = Store.open(f"sqlite:///{db}")
    ready_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # interpreter, imports, an empty store
    src = JsonlSource(source_id="bench", path=path, timezone="Asia/Shanghai", store=store, clock=SystemClock(),
                      channels=CHANNELS)
    if batch_lines is not None:
        src.batch_lines = batch_lines
    t0 = time.perf_counter()
    r = src.poll()
    seconds = time.perf_counter() - t0
    src.close()
    orders = store.order_count()
    store.close()
    return {"seconds": seconds, "accepted": r.accepted, "duplicate": r.duplicate, "rejected": r.rejected,
            "reasons": r.reasons, "orders": orders, "batch_lines": src.batch_lines, "ready_rss_mb": ready_mb,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch-lines", type=int, default=None, help="JsonlSource batch size (default: its own)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "parse":
            print(json.dumps(child_parse(Path(rest[0]))))
        else:
            print(json.dumps(child_ingest(Path(rest[0]), Path(rest[1]), int(rest[2]) if rest[2:] else None)))
        return

    with tempfile.TemporaryDirectory(prefix="paymon-ingest-") as tmp:
        log = Path(tmp) / "orders.jsonl"
        t0 = time.perf_counter()
        generate(log, args.events)
        gen_s = time.perf_counter() - t0
        size_mb = log.stat().st_size / 1e6
        bare = run_child("parse", str(log))
        extra = [] if args.batch_lines is None else [str(args.batch_lines)]
        ing = run_child("ingest", str(log), str(Path(tmp) / "paymon.db"), *extra)
    events = args.events
    ingest_s, bare_s = ing["seconds"], bare["seconds"]
    counted = ing["accepted"] + ing["duplicate"] + ing["rejected"]
    if counted != events:
        raise SystemExit(f"counts do not add up: {counted} counted of {events} lines ({ing})")
    rate = events / ingest_s
    peak = ing["peak_rss_mb"]
    print(f"log: {events:,} lines, {size_mb:.0f} MB, written in {gen_s:.1f} s; {ing['orders']:,} orders stored; "
          f"batch_lines {ing['batch_lines']}")
    print(f"counts: {ing['accepted']:,} accepted, {ing['duplicate']:,} duplicate, {ing['rejected']:,} rejected "
          f"{ing['reasons']}")
    print(f"{'step':<36} {'seconds':>8} {'events/s':>10}")
    print(f"{'bare parse (readline + orjson.loads)':<37} {bare_s:>8.2f} {events / bare_s:>10,.0f}")
    print(f"{'ingest (JsonlSource.poll -> SQLite)':<36} {ingest_s:>8.2f} {rate:>10,.0f}")
    print(f"ingest / bare parse: {ingest_s / bare_s:.1f}x; peak RSS of the ingest process: {peak:.0f} MB "
          f"({ing['ready_rss_mb']:.0f} MB of it before the first line: interpreter, imports, store)")
    print(json.dumps({"events": events, "ingest_s": round(ingest_s, 2), "events_per_s": round(rate),
                      "bare_parse_s": round(bare_s, 2), "peak_rss_mb": round(peak),
                      "orders": ing["orders"], "accepted": ing["accepted"], "duplicate": ing["duplicate"],
                      "rejected": ing["rejected"]}))


if __name__ == "__main__":
    main()
