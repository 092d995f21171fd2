"""Operator control of routing weights (``paymon weights``): each channel's weight and why, the audit trail as
people read it, and the routing row an operator's ``set`` or ``restore`` leaves behind. Pure: the command
(``monitor.weights_cmd``) reads the store and the sink, and writes the result through the routing stage.

An operator's weight is recorded like paymon's own (a routing row with its audited change), so the policy treats
it as the new baseline and a running daemon sees it as applied, not as an edit of the file. Changing a channel a
rule still holds down makes it an operator hold: paymon leaves it alone until that rule resolves, never silently
overwriting what the operator chose.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from monitor.config import ChannelConfig
from monitor.errors import UsageError
from monitor.models import RoutingRow, WeightChange
from monitor.routing.policy import ChannelRouting, RestorePolicy, Wish, adopt, next_restore
from monitor.timefmt import show_time

__all__ = ["Edit", "actor_label", "check_channel", "history_lines", "history_view", "holders",
           "restore_weight", "set_weight", "show_lines", "show_view", "unserved_methods"]

@dataclass(frozen=True)
class Edit:
    """What an operator's command does: the channel's row afterwards, the audited changes (none: nothing to
    record), and one line that tells the operator what happened."""

    row: RoutingRow
    changes: list[WeightChange]
    message: str


def check_channel(channel: str, known: Sequence[str]) -> None:
    """Raise a one-line :class:`UsageError` for a channel id the config does not have, with the closest ids."""
    if channel in known:
        return
    close = difflib.get_close_matches(channel, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; channels: {', '.join(known) or 'none'}"
    raise UsageError(f"unknown channel {channel!r}{hint}")


def holders(wishes: Iterable[Wish], channel: str) -> list[str]:
    """The rules (and ``maintenance``) that want ``channel`` lower right now, strongest first, each once."""
    out: list[str] = []
    for w in sorted((w for w in wishes if w.channel == channel), key=lambda w: w.factor):
        if w.rule not in out:
            out.append(w.rule)
    return out


def set_weight(ch: ChannelRouting, row: RoutingRow | None, weight: int, *, holding: Sequence[str], now: datetime,
               actor: str) -> Edit:
    """The operator's new weight for ``ch``: it becomes the baseline and the target at once (any restore in
    progress ends). While ``holding`` rules want the channel lower it is an operator hold."""
    row, changes = adopt(ch, row, wished=bool(holding), now=now)
    if row.target == weight == row.baseline and not holding:
        return Edit(row, changes, f"{ch.id}: weight is {weight} already; nothing changed")
    reason = f"set by {actor}"
    if holding:
        reason += f" while {', '.join(holding)} fires (held until it resolves)"
    changes.append(WeightChange(ch.id, row.target, weight, reason, now, None, actor))
    new = replace(row, baseline=weight, target=weight, step=0, reason=reason, changed_at=now, healthy_since=None,
                  operator_hold=bool(holding))
    msg = f"{ch.id}: weight {row.target} → {weight} (the new baseline)"
    if holding:
        msg += (f"; {', '.join(holding)} still fires on it: this is an operator hold, paymon leaves the weight "
                "alone until it resolves")
    return Edit(new, changes, msg)


def restore_weight(ch: ChannelRouting, row: RoutingRow | None, *, holding: Sequence[str], force: bool,
                   now: datetime, actor: str) -> Edit:
    """Back to the baseline now, skipping the remaining restore steps. Refused while ``holding`` rules still want
    the channel lower (it would be lowered again, or send buyers to a broken channel) unless ``force``: then it
    is an operator hold, as with ``set``."""
    row, changes = adopt(ch, row, wished=bool(holding), now=now)
    if row.target >= row.baseline:
        return Edit(row, changes, f"{ch.id}: weight {row.target} is its baseline already; nothing to restore")
    if holding and not force:
        raise UsageError(f"{ch.id}: not restored, {', '.join(holding)} still fires on it (weight {row.target}, "
                         f"baseline {row.baseline}); wait until it resolves, or use --force")
    reason = f"restored by {actor}" + (f" while {', '.join(holding)} fires (held until it resolves)"
                                           if holding else "")
    changes.append(WeightChange(ch.id, row.target, row.baseline, reason, now, None, actor))
    new = replace(row, target=row.baseline, step=0, reason=reason, changed_at=now, healthy_since=None,
                  operator_hold=bool(holding))
    msg = f"{ch.id}: weight {row.target} → {row.baseline} (its baseline)"
    if holding:
        msg += f"; forced while {', '.join(holding)} fires: paymon leaves the weight alone until it resolves"
    return Edit(new, changes, msg)


def unserved_methods(channel: str, weight: int, channels: Sequence[ChannelConfig], weights: Mapping[str, int],
                     min_active: int) -> list[str]:
    """The payment methods of ``channel`` that would have fewer than ``min_active`` channels of weight > 0 if it
    had ``weight`` (the guard paymon applies to its own drains; an operator may still choose it, knowingly)."""
    now = {**weights, channel: weight}
    methods: Sequence[str] = next((c.methods for c in channels if c.id == channel), [])
    return [m for m in methods
            if sum(1 for c in channels if m in c.methods and now.get(c.id, 0) > 0) < min_active]


def actor_label(c: WeightChange) -> str:
    """Who made a change, as the audit shows it: ``rule`` (paymon, because a rule fired), ``paymon`` (its own
    restore steps), ``operator-edit`` (a hand edit of the shop's weight paymon found), or the stored actor
    (``cli:<user>``, ``telegram:<id>``)."""
    if c.actor == "paymon":
        return "rule" if c.rule else "paymon"
    return "operator-edit" if c.actor == "operator" else c.actor


def show_view(channels: Sequence[ChannelConfig], rows: Mapping[str, RoutingRow], weights: Mapping[str, int],
              wishes: Sequence[Wish], restore: RestorePolicy) -> list[dict[str, Any]]:
    """One JSON-ready entry per channel: the weight the shop reads (None: the sink has none for it), paymon's
    target and the operator's baseline, why it is lower, what holds it down now, when the next restore step is
    due, and whether an operator hold stands."""
    out = []
    for c in channels:
        shop = weights.get(c.id)
        row = rows.get(c.id)
        target = row.target if row is not None else shop
        baseline = row.baseline if row is not None else shop
        due = next_restore(row, restore) if row is not None else None
        out.append({
            "channel": c.id, "name": c.name, "shop_weight": shop, "target": target, "baseline": baseline,
            "reason": row.reason if row is not None and row.target < row.baseline else "",
            "holding": holders(wishes, c.id), "next_restore": due.isoformat() if due else None,
            "operator_hold": bool(row is not None and row.operator_hold),
        })
    return out


def show_lines(view: Sequence[Mapping[str, Any]], zone: str) -> list[str]:
    """``weights show`` as an aligned table."""
    head = ("CHANNEL", "SHOP", "TARGET", "BASELINE", "WHY LOWER", "NEXT RESTORE", "HOLD")
    table = [head]
    for v in view:
        why = v["reason"] or ("-" if not v["holding"] else "")
        if v["holding"]:
            why = f"{why}; fires: {', '.join(v['holding'])}" if why else f"fires: {', '.join(v['holding'])}"
        table.append((
            v["channel"], _num(v["shop_weight"]), _num(v["target"]), _num(v["baseline"]), why,
            show_time(v["next_restore"], zone) if v["next_restore"] else "-",
            "operator" if v["operator_hold"] else "-",
        ))
    return _columns(table)


def history_view(changes: Iterable[WeightChange]) -> list[dict[str, Any]]:
    """The audit trail, JSON-ready (times ISO 8601 UTC), newest first as given."""
    return [{"at": c.at.isoformat(), "channel": c.channel, "old": c.old, "new": c.new, "reason": c.reason,
             "rule": c.rule, "actor": actor_label(c)} for c in changes]


def history_lines(changes: Iterable[WeightChange], zone: str) -> list[str]:
    """``weights history`` as an aligned table, times in the display zone."""
    table = [("TIME", "CHANNEL", "CHANGE", "REASON", "RULE", "ACTOR")]
    table += [(show_time(c.at, zone), c.channel, f"{c.old} → {c.new}", c.reason, c.rule or "-", actor_label(c))
              for c in changes]
    return _columns(table)


def _num(n: int | None) -> str:
    return "-" if n is None else str(n)


def _columns(table: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
