"""Counting each order's outcome once, for ``paymon_orders_total`` and ``paymon_callback_latency_seconds``.

Outcomes are derived again every cycle from the stored orders (:func:`~monitor.metrics.stats.order_facts`), and a
late event can decide an order long after it was created, so "count what changed" is not a time range: it is a
set difference. :class:`OnceCounter` remembers which orders it has counted per outcome (only those still in the
cycle's frame, so memory stays bounded by the window) and reports only the new ones. The first call after a
start only learns what is already there: a restarted process's counters start at zero, as Prometheus expects,
instead of jumping by a whole day of orders.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

__all__ = ["OUTCOMES", "OnceCounter"]

#: The ``outcome`` label values of ``paymon_orders_total``.
OUTCOMES: tuple[str, ...] = ("created", "paid", "failed", "lost")


class OnceCounter:
    """New outcomes and callback latencies since the last call, each order counted once per outcome."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {k: set() for k in (*OUTCOMES, "latency")}
        self._primed = False

    def step(self, facts: pd.DataFrame) -> tuple[Counter[tuple[str, str]], list[tuple[str, float]]]:
        """``facts`` as :func:`~monitor.metrics.stats.order_facts` returns them → (increments per (channel,
        outcome), new (channel, latency seconds) observations)."""
        counts: Counter[tuple[str, str]] = Counter()
        latencies: list[tuple[str, float]] = []
        present = set(facts["order_id"])
        for outcome in (*OUTCOMES, "latency"):
            mask = facts["latency"].notna() if outcome == "latency" else facts[outcome].astype(bool)
            rows = facts[mask]
            seen = self._seen[outcome] & present
            fresh = rows[~rows["order_id"].isin(seen)]
            seen.update(fresh["order_id"])
            self._seen[outcome] = seen
            if not self._primed:
                continue
            if outcome == "latency":
                latencies.extend(zip(fresh["channel"], fresh["latency"].astype(float), strict=True))
            else:
                counts.update((ch, outcome) for ch in fresh["channel"])
        self._primed = True
        return counts, latencies
