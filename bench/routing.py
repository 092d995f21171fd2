"""Routing over a simulated day: static weights, paymon's ``auto`` and ``smart`` routing, and an oracle.

Three channels serve one payment method, operator weights 100 / 100 / 100, all at 95 % success when well:

- ``a`` (fee 1 %) degrades twice: a slow decline from 95 % to 70 % over two hours (06:00–08:00), 70 % for one
  more hour, repaired at 09:00; and a hard outage 15:00–15:30 (every payment and every query probe fails).
- ``b`` (fee 1 %) stays well.
- ``c`` (fee 3 %) stays well; it costs more.

Orders arrive as a Poisson stream of ``--rate`` orders a minute (default 2: about 2,900 a day, a mid-sized shop)
with amounts uniform in 10–200; the shop picks a channel at random in proportion to the weights it reads; an order
succeeds with its channel's true success probability at that minute (paid within 10–120 s), else stays unpaid and
counts as failed at the pay timeout (15 min), as paymon judges it. A failed order is lost revenue (buyers who retry
on another channel are not modelled). Each channel's query probe runs every 30 s. Every policy sees the same
orders, amounts and random draws (common random numbers); six hours of normal traffic before the day let the
CUSUM detector learn its baseline.

- **static**: the operator's weights all day.
- **auto** / **smart**: paymon's cycle on the shipped rules and routing settings (``config/monitor.yaml``), run
  every minute in simulated time on what was known then through ``paymon backtest``'s own stepper
  (:class:`monitor.backtest.Simulation`): the daemon's snapshot (a channel paymon holds down is judged on the
  orders since it acted, a drained one also on its probes), evaluation, and routing plan (told whose probes
  pass); the weights it decides are what the shop reads from the next order on. ``smart`` is ``routing.mode:
  smart`` with the default ``smart:`` settings.
- **oracle**: knows every channel's true success probability minute by minute and sends each minute's orders to
  the channel with the best success × (1 − fee).

Gain is measured against static weights; ``recovered_fraction`` is auto's share of the oracle's gain in success
ratio (target ≥ 0.8 with ≤ 12 weight changes a day).

    .venv/bin/python bench/routing.py [--rate 2] [--seeds 1] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from monitor.backtest import History, Simulation
from monitor.config import LoadedConfig, load_config
from monitor.models import ProbeResult
from monitor.snapshot import orders_since
from monitor.store.orders import orders_to_frame

ROOT = Path(__file__).resolve().parent.parent
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # 00:00 of the simulated day
WARMUP = timedelta(hours=6)
CHANNELS = {"a": 0.01, "b": 0.01, "c": 0.03}  # fee rates
BASELINE = 100
P_WELL = 0.95
PROBE_EVERY = timedelta(seconds=30)


def truth(channel: str, t: datetime) -> float:
    """The channel's true success probability at ``t``."""
    if channel != "a":
        return P_WELL
    h = (t - DAY0).total_seconds() / 3600
    if 6 <= h < 8:
        return P_WELL - (P_WELL - 0.70) * (h - 6) / 2
    if 8 <= h < 9:
        return 0.70
    if 15 <= h < 15.5:
        return 0.0
    return P_WELL


def probe_ok(channel: str, t: datetime) -> bool:
    return truth(channel, t) > 0


@dataclass(frozen=True)
class Minute:
    """The orders of one minute: arrival offsets (s), amounts, and the uniform draws for channel and outcome."""

    offsets: np.ndarray
    amounts: np.ndarray
    pick: np.ndarray
    luck: np.ndarray
    paid_after: np.ndarray


def traffic(rng: np.random.Generator, rate: float, minutes: int) -> list[Minute]:
    out = []
    for n in rng.poisson(rate, minutes):
        out.append(Minute(np.sort(rng.uniform(0, 60, n)), rng.uniform(10, 200, n).round(2), rng.random(n),
                          rng.random(n), rng.uniform(10, 120, n)))
    return out


def pick(weights: Mapping[str, int], u: float) -> str:
    """The shop's weighted random choice."""
    total = sum(weights.values())
    acc = 0.0
    for ch, w in weights.items():
        acc += w / total
        if u < acc:
            return ch
    return next(ch for ch, w in reversed(list(weights.items())) if w > 0)


#: Parts of the day reported apart: (label, from hour, to hour).
SEGMENTS = (("decline 06-09", 6.0, 9.0), ("outage 15:00-15:30", 15.0, 15.5))


def segment(t: datetime) -> str:
    h = (t - DAY0).total_seconds() / 3600
    return next((label for label, lo, hi in SEGMENTS if lo <= h < hi), "rest of the day")


@dataclass
class Result:
    orders: int = 0
    succeeded: int = 0
    revenue: float = 0.0
    changes: int = 0
    log: list[str] = field(default_factory=list)
    #: Per part of the day: [orders, succeeded].
    parts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def success(self) -> float:
        return self.succeeded / self.orders if self.orders else 0.0


def config(folder: Path, mode: str) -> LoadedConfig:
    """The shipped monitor.yaml's rules and routing settings, with three simulated channels."""
    yaml = YAML(typ="safe")
    shipped = yaml.load((ROOT / "config" / "monitor.yaml").read_text(encoding="utf-8"))
    monitor = {"storage": {"url": "sqlite:///unused.db"}, "defaults": shipped["defaults"], "rules": shipped["rules"],
               "routing": {**shipped["routing"], "mode": mode, "sink": {"kind": "yaml"}}}
    channels = {"channels": [
        {"id": ch, "kind": "epay", "methods": ["alipay"], "weight": BASELINE, "fee_rate": fee,
         "endpoint": f"http://127.0.0.1:9/{ch}/", "credentials": {"pid": "1001", "key": f"key-of-{ch}-123456"}}
        for ch, fee in CHANNELS.items()]}
    with (folder / "monitor.yaml").open("w", encoding="utf-8") as f:
        yaml.dump(monitor, f)
    with (folder / "channels.yaml").open("w", encoding="utf-8") as f:
        yaml.dump(channels, f)
    return load_config(folder / "monitor.yaml", env={})


Router = Callable[[datetime], dict[str, int]]


class Paymon:
    """paymon's cycle in simulated time, through ``paymon backtest``'s machinery (:class:`monitor.backtest.Simulation`
    on a :class:`monitor.backtest.History` of the orders and probes so far): the daemon's snapshot (the channels it
    holds down judged on the orders since), evaluation, and routing plan (with the channels whose probes pass)."""

    def __init__(self, cfg: LoadedConfig) -> None:
        self.cfg = cfg
        self.sim = Simulation(cfg, {ch: BASELINE for ch in CHANNELS})
        self.orders: list[dict[str, Any]] = []
        self.probes: list[ProbeResult] = []
        self.changes: list[str] = []
        self.warmup: list[str] = []  # changes before the day (not counted)

    @property
    def weights(self) -> dict[str, int]:
        return self.sim.weights

    def probe(self, t: datetime) -> None:
        for ch in CHANNELS:
            self.probes.append(ProbeResult(ch, "query", "ok" if probe_ok(ch, t) else "http_error", 0.1, t))

    def cycle(self, t: datetime, day_started: bool) -> None:
        since = pd.Timestamp(orders_since(self.cfg, t))
        frame = orders_to_frame(self.orders)
        history = History(self.cfg, frame[frame["created_at"] >= since], self.probes)
        snap = self.sim.snapshot(history, t)
        self.sim.evaluate(snap, {})
        for c in self.sim.route(snap, {}):
            (self.changes if day_started else self.warmup).append(
                f"{t:%H:%M} {c.channel} {c.old}→{c.new} ({c.reason})")
        if len(self.orders) > 20_000:  # keep what the widest window can still read
            cut = t - timedelta(days=1, hours=1)
            self.orders = [o for o in self.orders if o["created_at"] >= cut]
        if len(self.probes) > 2_000:  # the failure streaks and the last results need only the recent ones
            self.probes = self.probes[-1_000:]


def run(name: str, minutes: list[Minute], rate: float, folder: Path) -> Result:
    paymon = Paymon(config(folder, name)) if name in ("auto", "smart") else None
    res = Result()
    start = DAY0 - WARMUP
    seq = 0
    for m, minute in enumerate(minutes):
        t = start + timedelta(minutes=m)
        day = t >= DAY0
        if paymon is not None:
            paymon.probe(t)
            paymon.probe(t + PROBE_EVERY)
            weights = dict(paymon.weights)
        elif name == "oracle":
            best = max(CHANNELS, key=lambda ch: truth(ch, t) * (1 - CHANNELS[ch]))
            weights = {ch: int(ch == best) for ch in CHANNELS}
        else:
            weights = {ch: BASELINE for ch in CHANNELS}
        for k in range(len(minute.offsets)):
            at = t + timedelta(seconds=float(minute.offsets[k]))
            ch = pick(weights, float(minute.pick[k]))
            ok = bool(minute.luck[k] < truth(ch, at))
            amount = float(minute.amounts[k])
            seq += 1
            if day:
                res.orders += 1
                res.succeeded += ok
                res.revenue += amount * (1 - CHANNELS[ch]) * ok
                part = res.parts.setdefault(segment(at), [0, 0])
                part[0] += 1
                part[1] += ok
            if paymon is not None:
                paid = at + timedelta(seconds=float(minute.paid_after[k])) if ok else None
                paymon.orders.append({"order_id": f"O{seq}", "channel": ch, "method": "alipay", "amount": amount,
                                      "created_at": at, "channel_paid_at": paid, "callback_at": paid,
                                      "shop_paid_at": paid})
        if paymon is not None:
            paymon.cycle(t + timedelta(minutes=1), day)
    if paymon is not None:
        res.changes = len(paymon.changes)
        res.log = [f"(warm-up, not counted) {line}" for line in paymon.warmup] + paymon.changes
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2.0, help="orders per minute (default 2)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="print every weight change")
    args = ap.parse_args()
    started = time.perf_counter()
    minutes = int((WARMUP + timedelta(days=1)) / timedelta(minutes=1))
    names = ("static", "auto", "smart", "oracle")
    runs: dict[str, list[Result]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            stream = traffic(np.random.default_rng(seed), args.rate, minutes)
            for n in names:
                folder = Path(tmp) / f"{n}-{seed}"
                folder.mkdir()
                runs[n].append(run(n, stream, args.rate, folder))
    mean = {n: {"success": float(np.mean([r.success for r in rs])), "revenue": float(np.mean([r.revenue for r in rs])),
                "changes": float(np.mean([r.changes for r in rs]))} for n, rs in runs.items()}
    static, oracle = mean["static"], mean["oracle"]

    def recovered(n: str, key: str) -> float:
        gain = oracle[key] - static[key]
        return (mean[n][key] - static[key]) / gain if gain else 0.0

    elapsed = time.perf_counter() - started
    print(f"{args.rate:g} orders/min, {args.seeds} simulated days; mean per day")
    print(f"{'routing':>8} {'success':>8} {'revenue net of fees':>20} {'changes/day':>12} "
          f"{'of oracle gain (success)':>25} {'(revenue)':>10}")
    for n in names:
        print(f"{n:>8} {mean[n]['success']:>8.2%} {mean[n]['revenue']:>20,.0f} {mean[n]['changes']:>12.1f} "
              f"{recovered(n, 'success'):>25.0%} {recovered(n, 'revenue'):>10.0%}")
    print()
    print(f"{'success by part of the day':>26} " + " ".join(f"{n:>8}" for n in names))
    for label in [*(lab for lab, _, _ in SEGMENTS), "rest of the day"]:
        ratios = [sum(r.parts.get(label, [0, 0])[1] for r in runs[n]) / max(1, sum(r.parts.get(label, [0, 0])[0]
                  for r in runs[n])) for n in names]
        print(f"{label:>26} " + " ".join(f"{x:>8.2%}" for x in ratios))
    if args.verbose:
        for n in ("auto", "smart"):
            print(f"\n{n}, seed 0:")
            print("\n".join(runs[n][0].log))
    print(f"target: auto recovers ≥ 80 % of the oracle's gain with ≤ 12 changes a day; {elapsed:.0f} s")
    print(json.dumps({
        "static_success": round(static["success"], 4), "paymon_success": round(mean["auto"]["success"], 4),
        "smart_success": round(mean["smart"]["success"], 4), "oracle_success": round(oracle["success"], 4),
        "recovered_fraction": round(recovered("auto", "success"), 3),
        "smart_recovered_fraction": round(recovered("smart", "success"), 3),
        "changes_per_day": mean["auto"]["changes"], "smart_changes_per_day": mean["smart"]["changes"],
        "static_revenue": round(static["revenue"]), "paymon_revenue": round(mean["auto"]["revenue"]),
        "smart_revenue": round(mean["smart"]["revenue"]), "oracle_revenue": round(oracle["revenue"]),
        "orders_per_min": args.rate, "seeds": args.seeds,
    }))


if __name__ == "__main__":
    main()
