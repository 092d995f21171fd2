"""``paymon status`` as a table for people: from the status view (:func:`monitor.status.status_view`) to lines.

Every time is shown in the view's display zone, labelled once above the table and with its offset at each time.
A success ratio beside no orders is ``—`` (there is nothing to be a ratio of), never ``0.0%``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.timefmt import show_time, zone_label

__all__ = ["probes_text", "status_lines"]


def probes_text(probes: Mapping[str, Any]) -> str:
    """``ok``, ``failing 3×``, ``partial`` or ``none yet``."""
    if probes["state"] == "failing":
        return f"failing {probes['failures']}×"
    return str(probes["state"])


def _success(ch: Mapping[str, Any]) -> str:
    if not ch["orders"]:
        return f"— ({ch['window']})"
    ratio = ch["success_ratio"]
    return f"{'-' if ratio is None else f'{float(ratio) * 100:.1f}%'} ({ch['window']})"


def _next_restore(ch: Mapping[str, Any], zone: str) -> str:
    if ch["next_restore"] is not None:
        return show_time(ch["next_restore"], zone)
    return "when healthy" if ch["weight"] < ch["baseline"] else "-"


def _lost_when(lo: Mapping[str, Any], zone: str) -> str:
    """A lost order's time: only a channel's pay time is called one."""
    if lo.get("channel_paid_at"):
        return f"paid at the channel {show_time(lo['channel_paid_at'], zone)}"
    if lo.get("paid_learned_at"):
        return f"no pay time from the channel; paymon learned of it at {show_time(lo['paid_learned_at'], zone)}"
    return "no pay time from the channel"


def status_lines(view: Mapping[str, Any]) -> list[str]:
    """The table of channels, then what fires, the lost orders and the held funds."""
    zone = str(view["timezone"])
    out = [f"times in {zone_label(zone, datetime.fromisoformat(view['now']))}"]
    evaluation = view.get("evaluation") or {}
    if evaluation.get("state") == "failing":  # every state below is stale while cycles fail: say so first
        out.insert(0, f"EVALUATION FAILING since {show_time(evaluation['since'], zone)} "
                      f"({evaluation['failures']} cycles): {evaluation['reason']}; the states below are stale")
    rows = [("CHANNEL", "STATE", "PROBES", "WEIGHT", "BASELINE", "NEXT RESTORE", "SUCCESS", "ORDERS", "LOST",
             "CB P95", "LAST PROBE")]
    for ch in view["channels"]:
        last = ch["last_probe"]
        probe = "-" if last is None else f"{last['probe']} {last['outcome']} {last['latency_s'] * 1000:.0f}ms"
        p95 = "-" if ch["callback_p95_s"] is None else f"{ch['callback_p95_s']:.1f}s"
        rows.append((ch["id"], ch["state"], probes_text(ch["probes"]), str(ch["weight"]), str(ch["baseline"]),
                     _next_restore(ch, zone), _success(ch), str(ch["orders"]), str(ch["lost"]), p95, probe))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if view["firing"]:
        said = [f"{a['rule']}@{a['channel']}" + (f" ({a['reason']})" if a["reason"] else "")
                + (f" since {show_time(a['since'], zone)}" if a["since"] else "") for a in view["firing"]]
        out += ["", "firing: " + ", ".join(said)]
    if view["lost_orders"]:
        out += ["", "lost orders (paid at the channel, not in the shop):"]
        out += [f"  {lo['order_id']}  {lo['channel']}  {lo['amount'] or '?'}  {_lost_when(lo, zone)}  "
                f"trade_no {lo['trade_no'] or '-'}" for lo in view["lost_orders"]]
    if view["held_funds"]:
        out += ["", "held funds (the channel holds the buyer's money without completing the payment; the shop has "
                "no order; an operator must look):"]
        out += [f"  {h['order_id']}  {h['channel']}  {h['amount'] or '?'}  status {h['status']}  "
                f"seen by paymon at {show_time(h['seen_at'], zone)}  trade_no {h['trade_no'] or '-'}"
                for h in view["held_funds"]]
    return out
