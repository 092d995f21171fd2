"""The built-in signals a rule can watch, computed from one snapshot of what paymon knows. Pure.

A signal returns ``None`` when there is not enough data to say anything: the rule then gives no verdict (it
neither starts an alert nor resolves one). Signals whose data source arrives with a later stage
(``unsettled_balance`` needs the balance probe) return ``None`` until that source reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.models import ChannelStats, ProbeResult

__all__ = ["SIGNALS", "Signals", "signal_value"]


@dataclass(frozen=True)
class Signals:
    """Everything rules read in one cycle.

    ``stats`` is keyed by (channel, window label); ``probe_streaks`` and ``probe_window`` by (channel, probe),
    the latter holding the results of the longest rule window, newest first.
    """

    stats: Mapping[tuple[str, str], ChannelStats]
    probe_streaks: Mapping[tuple[str, str], int] = field(default_factory=dict)
    probe_window: Mapping[tuple[str, str], Sequence[ProbeResult]] = field(default_factory=dict)
    unsettled_balance: Mapping[str, float] = field(default_factory=dict)
    #: Per channel: 1.0 when the gateway says the merchant is banned, 0.0 when it says otherwise (see
    #: ``monitor.snapshot.merchant_standing``); absent when no probe has said either.
    merchant_banned: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """What a rule asks of a signal: which channel, window, probe, and the volume gate."""

    channel: str
    window: str
    window_s: float
    probe: str
    min_orders: int


def _ratio(s: ChannelStats | None, q: Query) -> float | None:
    if s is None or s.decided == 0 or s.decided < q.min_orders:
        return None
    return s.succeeded / s.decided


def _stat(name: str) -> Callable[[Signals, Query], float | None]:
    def get(sig: Signals, q: Query) -> float | None:
        s = sig.stats.get((q.channel, q.window))
        if s is None:
            return None
        v = getattr(s, name)
        return None if v is None else float(v)

    return get


def _probe_recent(sig: Signals, q: Query) -> list[ProbeResult]:
    results = sig.probe_window.get((q.channel, q.probe), ())
    if not results:
        return []
    newest = results[0].started_at.timestamp()
    return [r for r in results if newest - r.started_at.timestamp() <= q.window_s]


def _probe_success_ratio(sig: Signals, q: Query) -> float | None:
    recent = _probe_recent(sig, q)
    return sum(r.ok for r in recent) / len(recent) if recent else None


def _probe_latency_p95(sig: Signals, q: Query) -> float | None:
    recent = [r.latency_s for r in _probe_recent(sig, q) if r.ok]
    return float(np.quantile(recent, 0.95)) if recent else None


def _bad_signatures(sig: Signals, q: Query) -> float | None:
    recent = _probe_recent(sig, q)
    return float(sum(r.outcome == "bad_signature" for r in recent)) if recent else None


def _streak(sig: Signals, q: Query) -> float | None:
    n = sig.probe_streaks.get((q.channel, q.probe))
    return None if n is None else float(n)


def _lost_ratio(sig: Signals, q: Query) -> float | None:
    s = sig.stats.get((q.channel, q.window))
    return None if s is None or s.lost_order_ratio is None else s.lost_order_ratio


SIGNALS: dict[str, Callable[[Signals, Query], float | None]] = {
    "probe_failures_in_a_row": _streak,
    "probe_success_ratio": _probe_success_ratio,
    "probe_latency_p95": _probe_latency_p95,
    "bad_signatures": _bad_signatures,
    "success_ratio": lambda sig, q: _ratio(sig.stats.get((q.channel, q.window)), q),
    "orders": _stat("orders"),
    "lost_orders": _stat("lost"),
    "lost_order_ratio": _lost_ratio,
    "callback_latency_p50": _stat("callback_p50"),
    "callback_latency_p95": _stat("callback_p95"),
    "callback_latency_p99": _stat("callback_p99"),
    "pending_orders": _stat("pending"),
    "unsettled_balance": lambda sig, q: sig.unsettled_balance.get(q.channel),
    "merchant_banned": lambda sig, q: sig.merchant_banned.get(q.channel),
}


def signal_value(name: str, sig: Signals, q: Query) -> float | None:
    """The value of signal ``name`` for the query, or None for "no verdict"."""
    return SIGNALS[name](sig, q)
