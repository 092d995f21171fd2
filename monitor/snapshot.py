"""The snapshot stage: every number the rules and the status view need at ``now``, read from the store once.

:func:`order_view` is the pure part (window arithmetic, judging orders, window stats, detector outcomes), shared
with ``paymon backtest``, which runs it over history cut at each step; :func:`read_snapshot` adds what the store
holds about probes and past alerts and builds the :class:`~monitor.alerts.evaluate.Snapshot` the daemon's cycle
evaluates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from monitor.alerts.early import OrderTimes, order_times
from monitor.alerts.evaluate import DETECTOR_HISTORY, PROBE_DETECTOR_SIGNALS, Snapshot
from monitor.alerts.recovery import Recovering, lowered_at, recovering
from monitor.alerts.signals import Signals
from monitor.config import LoadedConfig, parse_duration
from monitor.config.maintenance import MaintenanceWindow, open_window
from monitor.metrics.stats import compute_stats, decided_outcomes, judge_orders
from monitor.models import MERCHANT_BANNED, ChannelStats, ProbeResult, RoutingRow
from monitor.store import Store

__all__ = ["PROBE_WINDOW_SIGNALS", "OrderView", "held_down", "in_maintenance", "merchant_standing", "order_view",
           "orders_since", "read_snapshot", "unsettled", "windows"]

#: Signals whose rules read the probe results of their window.
PROBE_WINDOW_SIGNALS = ("probe_success_ratio", "probe_latency_p95", "bad_signatures")


def windows(cfg: LoadedConfig) -> dict[str, timedelta]:
    """Every window a stat is computed for: the configured ``defaults.windows`` and each rule's own ``window``."""
    labels = list(cfg.monitor.defaults.windows)
    labels += [r.window for r in cfg.monitor.rules if r.window and r.window not in labels]
    if cfg.monitor.routing.mode == "smart" and cfg.monitor.routing.smart.window not in labels:
        labels.append(cfg.monitor.routing.smart.window)  # the success counts smart weights read
    return {label: parse_duration(label) for label in labels}


def orders_since(cfg: LoadedConfig, now: datetime) -> datetime:
    """How far back orders must be loaded for the widest window at ``now``: an order created that long ago can
    still be decided inside it (pay timeout plus callback deadline)."""
    d = cfg.monitor.defaults
    longest_pay = max([d.pay_timeout, *(c.pay_timeout for c in cfg.channels if c.pay_timeout is not None)])
    return now - max(windows(cfg).values()) - longest_pay - d.callback_deadline


def in_maintenance(cfg: LoadedConfig, now: datetime) -> dict[str, MaintenanceWindow]:
    """Channels with a maintenance window open at ``now``."""
    out: dict[str, MaintenanceWindow] = {}
    for ch in cfg.channels:
        window = open_window(ch.maintenance, ch.timezone, now)
        if window is not None:
            out[ch.id] = window
    return out


@dataclass(frozen=True)
class OrderView:
    """What the orders say at ``now``: window stats, the judged orders, and decided outcomes for detectors."""

    stats: Mapping[tuple[str, str], ChannelStats]
    judged: pd.DataFrame
    outcomes: Mapping[str, list[tuple[datetime, bool]]]
    #: Per channel, every order's creation, success and decided-failure times (the early detector's input).
    order_times: Mapping[str, OrderTimes] = field(default_factory=dict)
    #: The newest event time in the orders (never after ``now``): how far the order data is known.
    known_until: datetime | None = None


def order_view(cfg: LoadedConfig, frame: pd.DataFrame, now: datetime, *, outcomes: bool) -> OrderView:
    """Judge ``frame``'s orders at ``now`` and compute every window's stats (and, if ``outcomes``, the decided
    outcomes statistical detectors read). Pure."""
    d = cfg.monitor.defaults
    timeouts = {c.id: c.pay_timeout for c in cfg.channels if c.pay_timeout is not None}
    channels = [c.id for c in cfg.channels]
    judged = judge_orders(frame, now=now, channels=channels, pay_timeout=timeouts, default_pay_timeout=d.pay_timeout,
                          callback_deadline=d.callback_deadline)
    stats = compute_stats(
        frame, now=now, windows=windows(cfg), channels=channels, pay_timeout=timeouts,
        default_pay_timeout=d.pay_timeout, callback_deadline=d.callback_deadline, min_orders=d.min_orders,
        judged=judged,
    )
    decided = decided_outcomes(frame, now=now, channels=channels, pay_timeout=timeouts,
                               default_pay_timeout=d.pay_timeout, judged=judged) if outcomes else {}
    if not outcomes:
        return OrderView(stats, judged, decided)
    times, known = order_times_of(judged, channels, now)
    return OrderView(stats, judged, decided, times, known)


def order_times_of(judged: pd.DataFrame, channels: list[str], now: datetime) -> tuple[
        dict[str, OrderTimes], datetime | None]:
    """Per channel the judged orders' times as Unix seconds (:class:`OrderTimes`), and the newest event time in
    them (creation or success, never after ``now``; None without orders). Pure."""
    epoch = pd.Timestamp(0, tz="UTC")

    def seconds(col: str) -> np.ndarray:
        delta = (pd.to_datetime(judged[col], utc=True) - epoch) / pd.Timedelta(seconds=1)
        return np.asarray(delta.to_numpy(dtype=float, na_value=np.nan), dtype=float)

    created, success, failed = seconds("created_at"), seconds("success_time"), seconds("fail_time")
    channel = judged["channel"].to_numpy()
    keep = ~np.isnan(created)
    out = {ch: order_times({"created": created[keep & (channel == ch)], "success": success[keep & (channel == ch)],
                            "failed": failed[keep & (channel == ch)]}) for ch in channels}
    events = np.concatenate([created[keep], success[~np.isnan(success)]])
    events = events[events <= now.timestamp()]
    known = datetime.fromtimestamp(float(events.max()), UTC) if len(events) else None
    return out, known


def unsettled(last: Mapping[tuple[str, str], ProbeResult]) -> dict[str, float]:
    """The unsettled balance per channel, from its last successful balance probe."""
    return {ch: r.value for (ch, probe), r in last.items() if probe == "balance" and r.ok and r.value is not None}


def merchant_standing(last: Mapping[tuple[str, str], ProbeResult]) -> dict[str, float]:
    """Per channel, whether the gateway says the merchant is banned (1.0) or not (0.0), from the newest result of
    each of its probes: the newest that says anything decides. A result with code ``merchant_banned`` says banned;
    an ``ok`` says not (a gateway that has banned a merchant refuses its orders and says so to every probe that
    reads its standing); any other failure says nothing. No such result: the channel is left out (no verdict)."""
    said: dict[str, tuple[datetime, float]] = {}
    for (channel, _), r in last.items():
        if r.code == MERCHANT_BANNED:
            verdict = 1.0
        elif r.ok:
            verdict = 0.0
        else:
            continue
        if channel not in said or r.started_at > said[channel][0]:
            said[channel] = (r.started_at, verdict)
    return {channel: verdict for channel, (_, verdict) in said.items()}


def held_down(cfg: LoadedConfig, rows: Mapping[str, RoutingRow], judged: pd.DataFrame | None,
              last: Mapping[tuple[str, str], ProbeResult], now: datetime,
              lowered: Mapping[str, datetime]) -> dict[str, Recovering]:
    """The channels paymon holds below their baseline, as their ``success_ratio`` alerts are judged meanwhile
    (``monitor.alerts.recovery``). Pure; the daemon's snapshot and ``paymon backtest`` both call it."""
    d = cfg.monitor.defaults
    return recovering(rows, judged, last, now=now, lowered=lowered,
                      pay_timeout={c.id: c.pay_timeout or d.pay_timeout for c in cfg.channels})


def read_snapshot(cfg: LoadedConfig, store: Store, now: datetime) -> Snapshot:
    """Read the store and compute every number the rules and the status view need."""
    detectors = [r for r in cfg.monitor.rules if r.detector is not None]
    orders = order_view(cfg, store.orders_frame(orders_since(cfg, now)), now, outcomes=bool(detectors))
    # Only windowed probe rules read probe history; load just their widest window (not the 24h stats window).
    probe_windows = [parse_duration(r.window or "15m") for r in cfg.monitor.rules if r.signal in PROBE_WINDOW_SIGNALS]
    recent: dict[tuple[str, str], list[ProbeResult]] = {}
    if probe_windows:
        for r in store.probe_results(since=now - max(probe_windows)):
            recent.setdefault((r.channel, r.probe), []).append(r)
    last = store.last_probes()
    signals = Signals(stats=orders.stats, probe_streaks=store.probe_failures_in_a_row(), probe_window=recent,
                      unsettled_balance=unsettled(last), merchant_banned=merchant_standing(last))
    rows = store.routing_states()
    lowered = lowered_at(store.weight_history(since=now - DETECTOR_HISTORY, limit=10_000)) if any(
        r.target < r.baseline for r in rows.values()) else {}
    held = held_down(cfg, rows, orders.judged, last, now, lowered)
    if not detectors:
        return Snapshot(now, orders.stats, signals, last, judged=orders.judged, recovering=held)
    probe_outcomes: dict[tuple[str, str], list[tuple[datetime, bool]]] = {}
    if any(r.signal in PROBE_DETECTOR_SIGNALS for r in detectors):
        for r in reversed(store.probe_results(since=now - DETECTOR_HISTORY)):
            probe_outcomes.setdefault((r.channel, r.probe), []).append((r.started_at, r.ok))
    periods = firing_periods(store.alert_history(since=now - DETECTOR_HISTORY, limit=100_000),
                             {r.name for r in detectors})
    return Snapshot(now, orders.stats, signals, last, orders.outcomes, probe_outcomes, periods, orders.judged, held,
                    orders.order_times, orders.known_until)


def firing_periods(history: list[dict[str, Any]], rules: set[str]) -> dict[
    tuple[str, str], list[tuple[datetime, datetime | None]]
]:
    """Firing periods per (rule, channel) of ``rules``, from the alert history (newest first, as the store gives
    it): (fired, resolved or None while it still fires)."""
    periods: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = {}
    for h in reversed(history):
        if h["rule"] not in rules:
            continue
        spans = periods.setdefault((str(h["rule"]), str(h["channel"])), [])
        at = h["at"]
        assert isinstance(at, datetime)
        if h["kind"] == "firing":
            spans.append((at, None))
        elif h["kind"] == "resolved" and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], at)
    return periods
