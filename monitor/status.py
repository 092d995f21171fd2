"""Status views: each channel's state, and the JSON of ``paymon status --json`` and ``GET /api/status``.

A channel's state says only what paymon knows: ``maintenance`` while a window is open, ``down`` / ``degraded``
while a critical / other alert fires, ``healthy`` when there is data and nothing fires, ``unknown`` without data.
``reasons`` says why, one entry per firing alert (inhibited ones last, then critical first): in words where the
rule's signal has words (``merchant_banned``: "merchant banned at the gateway", in ``notify.language``), else the
rule's name.
``paymon status`` and ``/api/status`` show one more state: ``failing`` for a channel on which nothing fires yet but
every probe has failed since the channel's last success (its ``probes`` say how often): such a channel is not
called healthy. ``probes`` is the probe state beside the rule state: ``ok``, ``failing`` (with ``failures``, the
longest run of failures), ``partial`` (some probes fail) or ``none yet``. ``baseline`` is the operator's weight and
``next_restore`` when the next restore step is due (routing state). ``success_ratio`` is None beside 0 orders.
Times in the JSON are ISO 8601 in UTC; ``timezone`` names the zone people are shown them in.
No secrets: ids, names and numbers only. Lost orders carry ``channel_paid_at`` only when the channel gave a pay
time (else ``paid_learned_at``: when paymon learned of the payment, never a pay time); ``held_funds`` lists the
orders whose buyer's money the channel holds without completing the payment, with the time paymon saw each.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.alerts.evaluate import Snapshot
from monitor.alerts.muting import inhibited_by
from monitor.alerts.render import alert_reason
from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.models import AlertState, ChannelStats, ProbeResult, RoutingRow
from monitor.routing.plan import restore_policy
from monitor.routing.policy import RestorePolicy, next_restore
from monitor.snapshot import in_maintenance, read_snapshot
from monitor.store import Store
from monitor.store.health import read_health
from monitor.store.reconcile import ReconcileStore

__all__ = ["EXIT_DOWN", "EXIT_EVALUATION_FAILING", "channel_reasons", "channel_states", "probe_state",
           "status_exit_code", "status_view"]

#: ``paymon status`` exit code when a channel is down: a critical alert fires on it, or all its probes fail.
EXIT_DOWN = 3
#: ``paymon status`` exit code when the daemon's evaluation cycles are failing (its numbers are stale).
EXIT_EVALUATION_FAILING = 4


def channel_states(
    cfg: LoadedConfig, snap: Snapshot, alerts: Mapping[tuple[str, str], AlertState],
    maintenance: Mapping[str, MaintenanceWindow] | None = None,
) -> dict[str, str]:
    """maintenance / down / degraded / healthy / unknown per channel: an open maintenance window first, then what
    fires, then whether there is any data."""
    severity = {r.name: r.severity for r in cfg.monitor.rules}
    out: dict[str, str] = {}
    for ch in cfg.channels:
        if maintenance and ch.id in maintenance:
            out[ch.id] = "maintenance"
            continue
        firing = [severity.get(rule, "warning") for (rule, c), s in alerts.items()
                  if c == ch.id and s.state == "firing"]
        has_data = any(c == ch.id for c, _ in snap.last_probes) or any(
            s.decided > 0 for (c, _), s in snap.stats.items() if c == ch.id)
        if "critical" in firing:
            out[ch.id] = "down"
        elif firing:
            out[ch.id] = "degraded"
        else:
            out[ch.id] = "healthy" if has_data else "unknown"
    return out


def channel_reasons(cfg: LoadedConfig, alerts: Mapping[tuple[str, str], AlertState]) -> dict[str, list[str]]:
    """Why each channel is down or degraded: per firing alert, the reason in words where its signal has words
    (:func:`~monitor.alerts.render.alert_reason`), else the rule's name; alerts another firing alert inhibits
    last, then critical ones first."""
    rules = {r.name: r for r in cfg.monitor.rules}
    language = cfg.monitor.notify.language
    rank = {"critical": 0, "warning": 1, "info": 2}
    inhibited = inhibited_by({r.name: r.inhibits for r in cfg.monitor.rules}, alerts)
    firing = sorted((s for s in alerts.values() if s.state == "firing"),
                    key=lambda s: ((s.rule, s.channel) in inhibited,
                                   rank.get(rules[s.rule].severity, 3) if s.rule in rules else 3, s.rule))
    out: dict[str, list[str]] = {}
    for s in firing:
        rule = rules.get(s.rule)
        words = alert_reason(rule.signal, language=language) if rule is not None else None
        out.setdefault(s.channel, []).append(words or s.rule)
    return out


def probe_state(last: Mapping[str, ProbeResult], streaks: Mapping[str, int]) -> dict[str, Any]:
    """A channel's probes at a glance, from each probe's last result and failures in a row: ``none yet``, ``ok``
    (every probe's last result is ok), ``partial`` (some fail) or ``failing`` (all have failed since the
    channel's last success; ``failures`` is the longest run)."""
    if not last:
        return {"state": "none yet", "failures": 0}
    failed = [probe for probe, r in last.items() if not r.ok]
    if not failed:
        return {"state": "ok", "failures": 0}
    runs = max(streaks.get(probe, 1) for probe in failed)
    return {"state": "failing" if len(failed) == len(last) else "partial", "failures": runs}


def status_exit_code(view: Mapping[str, Any], *, evaluation_failing: bool | None = None) -> int:
    """``paymon status``'s exit code from its view, for cron and monitoring: 0 all fine,
    :data:`EXIT_DOWN` when a channel (not in maintenance) is down or all its probes fail,
    :data:`EXIT_EVALUATION_FAILING` when the daemon's own health (the view's ``evaluation``, or
    ``evaluation_failing`` when given) says its cycles fail; then no state in the view is current, so it goes
    first."""
    if evaluation_failing is None:
        evaluation_failing = (view.get("evaluation") or {}).get("state") == "failing"
    if evaluation_failing:
        return EXIT_EVALUATION_FAILING
    for ch in view["channels"]:
        if ch["state"] == "maintenance":
            continue
        if ch["state"] in ("down", "failing") or ch["probes"]["state"] == "failing":
            return EXIT_DOWN
    return 0


def _routing_fields(row: RoutingRow | None, weight: int, restore: RestorePolicy) -> dict[str, Any]:
    """The operator's baseline weight (the current weight while paymon keeps no row) and the next restore step."""
    if row is None:
        return {"baseline": weight, "next_restore": None}
    return {"baseline": row.baseline, "next_restore": _iso(next_restore(row, restore))}


def status_view(cfg: LoadedConfig, store: Store, now: datetime, weights: Mapping[str, int]) -> dict[str, Any]:
    """The JSON of ``paymon status --json`` and ``GET /api/status``."""
    snap = read_snapshot(cfg, store, now)
    alerts = store.alert_states()
    states = channel_states(cfg, snap, alerts, in_maintenance(cfg, now))
    routing = store.routing_states()
    restore = restore_policy(cfg)
    reasons = channel_reasons(cfg, alerts)
    signals = {r.name: r.signal for r in cfg.monitor.rules}
    language = cfg.monitor.notify.language
    labels = list(cfg.monitor.defaults.windows)
    main = "15m" if "15m" in labels else labels[0]
    channels = []
    for ch in cfg.channels:
        last = sorted((p for (c, _), p in snap.last_probes.items() if c == ch.id),
                      key=lambda p: p.started_at, reverse=True)
        probes = probe_state({p.probe: p for p in last},
                             {probe: n for (c, probe), n in snap.signals.probe_streaks.items() if c == ch.id})
        state = states[ch.id]
        if state in ("healthy", "unknown") and probes["state"] == "failing":
            state = "failing"  # nothing fires yet, but nothing has answered either: not healthy
        weight = weights.get(ch.id, ch.weight)
        channels.append({
            "id": ch.id, "name": ch.name, "kind": ch.kind, "tier": ch.tier, "state": state,
            "reasons": reasons.get(ch.id, []) if state in ("down", "degraded") else [],
            "probes": probes, "weight": weight,
            **_routing_fields(routing.get(ch.id), weight, restore), "window": main,
            **_window_fields(snap.stats.get((ch.id, main))),
            "last_probe": _probe_fields(last[0]) if last else None,
        })
    firing = [
        {"rule": s.rule, "channel": s.channel, "since": s.fired_at.isoformat() if s.fired_at else None,
         "value": s.value, "reason": alert_reason(signals.get(s.rule, ""), language=language)}
        for s in alerts.values() if s.state == "firing"
    ]
    book = ReconcileStore(store)
    lost = [
        {"order_id": lo.order_id, "channel": lo.channel, "amount": lo.amount, "trade_no": lo.trade_no,
         "channel_paid_at": _iso(lo.channel_paid_at), "paid_learned_at": _iso(lo.paid_learned_at),
         "evidence": lo.evidence, "found_at": lo.found_at.isoformat()}
        for lo in book.lost_orders(open_only=True, limit=50)
    ]
    held = [
        {"order_id": h.order_id, "channel": h.channel, "amount": h.amount, "trade_no": h.trade_no,
         "status": h.status, "seen_at": h.seen_at.isoformat()}
        for h in book.held_funds(open_only=True, limit=50)
    ]
    health = read_health(store)
    evaluation = {"state": "failing" if health.failing else "ok", "since": _iso(health.failing_since),
                  "reason": health.reason if health.failing else None,
                  "failures": health.failures if health.failing else 0}
    return {"now": now.isoformat(), "timezone": cfg.monitor.display.timezone, "evaluation": evaluation,
            "channels": channels, "firing": firing, "lost_orders": lost, "held_funds": held}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _window_fields(s: ChannelStats | None) -> dict[str, Any]:
    """A channel's numbers over the status window; unknown (None) without stats or orders, never an invented 0
    ratio."""
    return {
        "success_ratio": None if s is None or s.orders == 0 else s.success_ratio,
        "orders": 0 if s is None else s.orders,
        "lost": 0 if s is None else s.lost,
        "callback_p95_s": None if s is None else s.callback_p95,
        "funnel": None if s is None else {"created": s.orders, "redirected": s.redirected, "paid": s.paid,
                                          "callback": s.callback, "delivered": s.delivered},
    }


def _probe_fields(p: ProbeResult) -> dict[str, Any]:
    return {"probe": p.probe, "outcome": p.outcome, "at": p.started_at.isoformat(),
            "latency_s": round(p.latency_s, 4), "detail": p.detail}
