"""Per-channel window statistics over order rows, as the README's "What the numbers mean" defines them.

Pure: no I/O, ``now`` given.

For an order created at ``c`` on a channel with pay timeout ``T``:

- it **succeeded** at ``s = min(verified callback, shop marked paid)`` when ``s <= c + T``;
- otherwise it **failed** at ``min(expired, c + T)`` once that moment has passed;
- until then it is **pending**.

``success_ratio(W)`` counts orders whose outcome became known in ``(now - W, now]``; with fewer than
``min_orders`` decided orders there is no value (``None``): too little data is not a verdict.

An order is **paid at the channel** when the channel or the shop says so: a pay time from the channel (its
order query, or a callback that carries one), a callback (verified or not), or the shop's paid mark. Its **paid
time** places it in a window: the channel's pay time when known, else the earliest callback or shop-paid time
(:data:`PAID_TIME_CHAIN`, one tier per fallback). Every such order counts in the lost-order ratio's denominator,
not only those whose pay time came from reconciliation: a V1 epay notify carries no pay time, and on a channel
whose notifies all arrive, reconciliation never asks about its orders.

A **lost order** is one the channel reports paid (its pay time, or an unverified callback, as evidence) that has
no verified callback by ``pay time + callback_deadline``. Channels give pay times in whole seconds (epay
``endtime``, WeChat ``time_end``, Alipay ``send_pay_date``): a pay time with no fraction of a second stands for
that whole second, so the deadline runs from its end (:func:`paid_by`); without that, a callback right on time
could be judged late by up to a second. ``lost_order_ratio(W)`` = lost / orders paid at the channel whose paid
time lies in W; an order is counted (in both) only once the callback deadline from its paid time (or, for a lost
order, from its evidence) has passed, so the newest orders, whose callbacks may still come, do not bias it.

The **funnel** follows the orders created in W: created → redirected (``pay_redirect``) → paid (verified
callback or ``order_paid``) → callback (verified) → delivered.

**Callback latency** = verified callback − channel pay time, or − ``pay_redirect`` where no pay time is known,
over callbacks that arrived in W.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

# ``ChannelStats`` is a shared record (``monitor.models``); its name stays importable from here.
from monitor.models import ChannelStats

__all__ = ["PAID_TIME_CHAIN", "ChannelStats", "compute_stats", "decided_outcomes", "judge_orders", "lost_deadline",
           "order_facts", "paid_by", "paid_time"]

#: Where an order's paid time comes from, best first: each tier is a group of order columns whose earliest value
#: is used when no earlier tier has one. The channel's own pay time; else the first callback (verified or not) or
#: the shop's paid mark; else the time paymon learned from an order query that the channel was paid (no pay time
#: given, so only a placement in a window, never shown as a pay time).
PAID_TIME_CHAIN: tuple[tuple[str, ...], ...] = (
    ("channel_paid_at",),
    ("callback_at", "unverified_callback_at", "shop_paid_at"),
    ("paid_learned_at",),
)


def paid_by(evidence: pd.Series) -> pd.Series:
    """The latest moment each evidence time can stand for: a whole-second time is the end of that second."""
    whole = evidence.notna() & (evidence.dt.microsecond == 0) & (evidence.dt.nanosecond == 0)
    return evidence + pd.to_timedelta(whole.astype("int64"), unit="s")


def paid_time(df: pd.DataFrame) -> pd.Series:
    """Each order's paid time by :data:`PAID_TIME_CHAIN` (NaT: not paid at the channel as far as paymon knows).
    A column missing from ``df`` is skipped, so a frame from before a column was added still works."""
    out = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    for tier in PAID_TIME_CHAIN:
        columns = [c for c in tier if c in df.columns]
        if columns:
            out = out.fillna(df[columns].min(axis=1))
    return out


def lost_deadline(evidence: datetime, deadline: timedelta) -> datetime:
    """:func:`paid_by` for one time, plus the callback deadline: after this, no verified callback means lost."""
    return evidence + deadline + (timedelta(seconds=1) if evidence.microsecond == 0 else timedelta(0))


def _outcomes(df: pd.DataFrame, now: pd.Timestamp, pay_timeout: pd.Series) -> pd.DataFrame:
    """Add ``success_time``, ``fail_time`` (NaT where not applicable) and ``pending`` columns."""
    deadline = df["created_at"] + pay_timeout
    success = df[["callback_at", "shop_paid_at"]].min(axis=1)
    success = success.where(success <= now)
    in_time = success.notna() & (success <= deadline)
    fail = pd.concat([df["expired_at"], deadline], axis=1).min(axis=1)
    fail = fail.where(~in_time & fail.notna() & (fail <= now))
    out = df.assign(
        success_time=success.where(in_time),
        fail_time=fail,
    )
    out["pending"] = df["created_at"].notna() & out["success_time"].isna() & out["fail_time"].isna()
    return out


def judge_orders(
    orders: pd.DataFrame,
    *,
    now: datetime,
    channels: Iterable[str],
    pay_timeout: Mapping[str, timedelta],
    default_pay_timeout: timedelta,
    callback_deadline: timedelta,
) -> pd.DataFrame:
    """The channels' orders with their outcomes (``success_time``, ``fail_time``, ``pending``) and the lost-order
    columns: ``evidence`` (channel pay time, else an unverified callback, else when paymon learned it was paid),
    ``judged`` (its deadline has passed), ``lost``, ``paid_time`` (:func:`paid_time`), ``counted`` (paid at the
    channel and judged: the callback deadline from its paid time has passed, or it is judged on its evidence), and
    the callback ``latency`` in seconds. :func:`compute_stats` and :func:`order_facts` both read this; a caller
    needing both judges once and passes the result to each."""
    now = pd.Timestamp(now)
    df = orders[orders["channel"].isin(list(channels))]
    timeouts = df["channel"].map(lambda c: pay_timeout.get(c, default_pay_timeout)).astype("timedelta64[us]")
    df = _outcomes(df, now, timeouts)
    # The same chain as the reconciler's lost-order rule (``PaidOrder.evidence_at``).
    evidence = df["channel_paid_at"].fillna(df["unverified_callback_at"])
    if "paid_learned_at" in df.columns:
        evidence = evidence.fillna(df["paid_learned_at"])
    due = paid_by(evidence) + callback_deadline
    judged = evidence.notna() & (due <= now)
    paid = paid_time(df)
    counted = judged | (paid.notna() & (paid_by(paid) + callback_deadline <= now))
    base = df["channel_paid_at"].fillna(df["redirected_at"])
    return df.assign(
        evidence=evidence,
        judged=judged,
        lost=judged & (df["callback_at"].isna() | (df["callback_at"] > due)),
        paid_time=paid,
        counted=counted,
        latency=(df["callback_at"] - base).dt.total_seconds(),
    )


def compute_stats(
    orders: pd.DataFrame,
    *,
    now: datetime,
    windows: Mapping[str, timedelta],
    channels: Iterable[str],
    pay_timeout: Mapping[str, timedelta],
    default_pay_timeout: timedelta,
    callback_deadline: timedelta,
    min_orders: int,
    judged: pd.DataFrame | None = None,
) -> dict[tuple[str, str], ChannelStats]:
    """Stats for every (channel, window label). ``orders`` is :func:`monitor.store.store.orders_to_frame` output;
    ``judged``, when given, is :func:`judge_orders` of it with the same arguments (not computed again)."""
    ts_now = pd.Timestamp(now)
    channels = list(channels)
    df = judged if judged is not None else judge_orders(
        orders, now=now, channels=channels, pay_timeout=pay_timeout, default_pay_timeout=default_pay_timeout,
        callback_deadline=callback_deadline)
    paid, counted, lost, latency = df["paid_time"], df["counted"], df["lost"], df["latency"]

    result: dict[tuple[str, str], ChannelStats] = {}
    for label, width in windows.items():
        start = ts_now - width
        created_in = df["created_at"].between(start, ts_now, inclusive="right")
        succ_in = df["success_time"].between(start, ts_now, inclusive="right")
        fail_in = df["fail_time"].between(start, ts_now, inclusive="right")
        paid_in = counted & paid.between(start, ts_now, inclusive="right")
        cb_in = df["callback_at"].between(start, ts_now, inclusive="right") & latency.notna()
        frame = pd.DataFrame(
            {
                "channel": df["channel"],
                "created": created_in,
                "succ": succ_in,
                "fail": fail_in,
                "paid": paid_in,
                "lost": paid_in & lost,
                "pending": df["pending"],
                "f_redirected": created_in & df["redirected_at"].notna(),
                "f_paid": created_in & (df["shop_paid_at"].notna() | df["callback_at"].notna()),
                "f_callback": created_in & df["callback_at"].notna(),
                "f_delivered": created_in & df["delivered_at"].notna(),
            }
        )
        sums = frame.groupby("channel").sum(numeric_only=True)
        lat = {str(ch): v.to_numpy() for ch, v in latency[cb_in].groupby(df["channel"][cb_in], observed=True)}
        for ch in channels:
            row = sums.loc[ch] if ch in sums.index else None
            keys = ("created", "succ", "fail", "paid", "lost", "pending", "f_redirected", "f_paid", "f_callback",
                    "f_delivered")
            n = {k: int(row[k]) if row is not None else 0 for k in keys}
            decided = n["succ"] + n["fail"]
            q = _quantiles(lat.get(ch, np.array([])))
            result[(ch, label)] = ChannelStats(
                channel=ch,
                window=label,
                orders=n["created"],
                succeeded=n["succ"],
                failed=n["fail"],
                success_ratio=(n["succ"] / decided) if decided >= max(min_orders, 1) else None,
                paid_at_channel=n["paid"],
                lost=n["lost"],
                lost_order_ratio=(n["lost"] / n["paid"]) if n["paid"] else None,
                callback_p50=q[0],
                callback_p95=q[1],
                callback_p99=q[2],
                pending=n["pending"],
                redirected=n["f_redirected"],
                paid=n["f_paid"],
                callback=n["f_callback"],
                delivered=n["f_delivered"],
            )
    return result


def _quantiles(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    if values.size == 0:
        return (None, None, None)
    p50, p95, p99 = np.quantile(values, [0.5, 0.95, 0.99])
    return (float(p50), float(p95), float(p99))


def decided_outcomes(
    orders: pd.DataFrame,
    *,
    now: datetime,
    channels: Iterable[str],
    pay_timeout: Mapping[str, timedelta],
    default_pay_timeout: timedelta,
    judged: pd.DataFrame | None = None,
) -> dict[str, list[tuple[datetime, bool]]]:
    """Every decided order per channel as (when it was decided, succeeded?), oldest first (for detectors).
    ``judged``, when given, is :func:`judge_orders` of ``orders`` (its outcome columns are used as they are)."""
    channels = list(channels)
    if judged is not None:
        df = judged
    else:
        df = orders[orders["channel"].isin(channels)]
        timeouts = df["channel"].map(lambda c: pay_timeout.get(c, default_pay_timeout)).astype("timedelta64[us]")
        df = _outcomes(df, pd.Timestamp(now), timeouts)
    out: dict[str, list[tuple[datetime, bool]]] = {ch: [] for ch in channels}
    for ch, ok_at, fail_at in zip(df["channel"], df["success_time"], df["fail_time"], strict=True):
        if not pd.isna(ok_at):
            out[ch].append((ok_at.to_pydatetime(), True))
        elif not pd.isna(fail_at):
            out[ch].append((fail_at.to_pydatetime(), False))
    for rows in out.values():
        rows.sort(key=lambda r: r[0])
    return out


def order_facts(df: pd.DataFrame) -> pd.DataFrame:
    """One row per order of a :func:`judge_orders` frame: ``order_id``, ``channel``, and what is known of it by the
    same rules as :func:`compute_stats`: ``created``, ``paid`` (succeeded), ``failed``, ``lost`` (booleans) and
    ``latency`` (seconds, NaN without a verified callback). The counters of ``paymon_orders_total`` and the
    callback latency histogram count each order once from this."""
    return pd.DataFrame({
        "order_id": df["order_id"],
        "channel": df["channel"],
        "created": df["created_at"].notna(),
        "paid": df["success_time"].notna(),
        "failed": df["fail_time"].notna(),
        "lost": df["lost"],
        "latency": df["latency"],
    })
