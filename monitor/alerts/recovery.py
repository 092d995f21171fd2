"""Judging a channel paymon has drained or reduced. Pure.

A ``success_ratio`` alert is judged on orders, but a channel at weight 0 gets none: "no data" never resolves it,
and the weight it holds down would stay down forever. So while paymon holds a channel below its baseline, a firing
``success_ratio`` alert on it is judged on what can still be seen:

- the orders created since paymon lowered it (or since the exploration trickle began): once ``min_orders`` of
  them are settled (created at least the pay timeout ago, so every one has its outcome), their success ratio is
  the rule's value (until then: no verdict), not the window's, which still holds the orders that failed before;
  a statistical detector reads only the outcomes of orders created since paymon lowered the channel (the late
  outcomes of older orders belong to the incident paymon already acted on);
- without ``routing.explore``, a drained channel (weight 0: no orders can judge it) also by its probes: when its
  ``query`` and ``test_order`` probes both succeed (their newest results, at least one of them since it was
  drained) and no order created since has failed or is still open, the alert resolves. A channel whose probes
  keep failing is never judged healthy. A reduced channel still gets orders, and a probe that answers says
  nothing about how many buyers' payments succeed (a channel at 70 % answers every query): it is judged on its
  orders only, else it would be restored at once, still degraded, merely because no order had reached it yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from monitor.models import ProbeResult, RoutingRow, WeightChange

__all__ = ["JUDGED_PROBES", "Recovering", "probes_pass", "judged_ratio", "passing", "recovering", "resolves_on_probes"]

#: The probes that say whether a channel takes payments again.
JUDGED_PROBES = ("query", "test_order")


@dataclass(frozen=True, slots=True)
class Recovering:
    """A channel paymon holds below its baseline, as its ``success_ratio`` alerts are judged: since when its
    orders count, how many of them are settled and how many of those succeeded, whether any order since has
    failed or is still open, and whether its probes pass."""

    since: datetime
    settled: int = 0
    succeeded: int = 0
    failed_or_open: bool = False
    probes_pass: bool = False
    #: Outcomes (decided at, succeeded?), oldest first, of the orders created since paymon last lowered the
    #: channel: what a statistical detector may still learn from (older orders belong to what it acted on).
    outcomes: tuple[tuple[datetime, bool], ...] = ()
    #: At weight 0 (no orders reach it), not merely reduced.
    drained: bool = False

    @property
    def ratio(self) -> float | None:
        return self.succeeded / self.settled if self.settled else None


def probes_pass(last: Mapping[tuple[str, str], ProbeResult], channel: str, since: datetime) -> bool:
    """The channel's newest ``query`` and ``test_order`` results (those it has) all succeed, and at least one of
    them ran after ``since``: it answers again, not merely "nothing failed since"."""
    newest = [r for (ch, probe), r in last.items() if ch == channel and probe in JUDGED_PROBES]
    return bool(newest) and all(r.ok for r in newest) and any(r.started_at > since for r in newest)


def lowered_at(history: Iterable[WeightChange]) -> dict[str, datetime]:
    """When paymon last lowered each channel, from the weight audit (any order)."""
    out: dict[str, datetime] = {}
    for w in history:
        if w.actor == "paymon" and w.new < w.old and (w.channel not in out or w.at > out[w.channel]):
            out[w.channel] = w.at
    return out


def passing(rows: Mapping[str, RoutingRow], last: Mapping[tuple[str, str], ProbeResult]) -> set[str]:
    """The channels with a routing row whose probes pass since its last weight change (:func:`probes_pass`)."""
    return {ch for ch, row in rows.items() if probes_pass(last, ch, row.changed_at)}


def recovering(rows: Mapping[str, RoutingRow], judged: pd.DataFrame | None,
               last: Mapping[tuple[str, str], ProbeResult], *, now: datetime,
               pay_timeout: Mapping[str, timedelta], lowered: Mapping[str, datetime]) -> dict[str, Recovering]:
    """Every channel paymon holds below its baseline, judged since its last weight change (the lowering, or the
    start of the exploration trickle or of a restore step). ``judged`` is the snapshot's judged orders
    (``judge_orders``); ``pay_timeout`` each channel's; ``lowered`` when paymon last lowered each (:func:`lowered_at`;
    its last change when unknown)."""
    out: dict[str, Recovering] = {}
    for ch, row in rows.items():
        if row.target >= row.baseline or ch not in pay_timeout:
            continue
        since = row.changed_at
        settled = succeeded = 0
        failed_or_open = False
        outcomes: list[tuple[datetime, bool]] = []
        if judged is not None and len(judged):
            ours = judged[(judged["channel"] == ch)
                          & (judged["created_at"] >= pd.Timestamp(min(since, lowered.get(ch, since))))]
            for ok_at, fail_at in zip(ours["success_time"], ours["fail_time"], strict=True):
                if not pd.isna(ok_at):
                    outcomes.append((ok_at.to_pydatetime(), True))
                elif not pd.isna(fail_at):
                    outcomes.append((fail_at.to_pydatetime(), False))
            mine = judged[(judged["channel"] == ch) & (judged["created_at"] >= pd.Timestamp(since))]
            done = mine[mine["created_at"] <= pd.Timestamp(now - pay_timeout[ch])]
            settled = int((done["success_time"].notna() | done["fail_time"].notna()).sum())
            succeeded = int(done["success_time"].notna().sum())
            failed_or_open = bool(mine["success_time"].isna().any())
        out[ch] = Recovering(since, settled, succeeded, failed_or_open, probes_pass(last, ch, since),
                             tuple(sorted(outcomes, key=lambda o: o[0])), drained=row.target == 0)
    return out


def judged_ratio(rec: Recovering, min_orders: int) -> float | None:
    """The success ratio of the settled orders since paymon acted, once there are ``min_orders`` of them."""
    return rec.ratio if rec.settled >= min_orders else None


def resolves_on_probes(rec: Recovering, *, explore: bool) -> bool:
    """Without exploration, a firing ``success_ratio`` alert on a channel paymon has drained resolves when its
    probes pass and no order since has failed or is still open. A reduced channel is judged on its orders only."""
    return not explore and rec.drained and rec.probes_pass and not rec.failed_or_open
