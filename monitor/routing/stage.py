"""The routing stage of a cycle: read the weights the shop uses, ask :func:`~monitor.routing.plan.plan`, persist
the decision and write the new weights to every sink. The one place routing does I/O.

``routing.mode`` decides how far it goes: ``off`` does nothing, ``suggest`` logs what it would change and writes
nothing, ``auto`` records the decision (rows, changes and their notifications) before writing the sinks, and marks a
weight applied only once every sink holds it, so a failed or waiting write is retried on the next cycle and never
lost.

Planning starts from the first sink that can be read (a YAML file's weights; dujiaoka's open/closed switch, read
as the weight paymon keeps for an open gateway), else from paymon's own routing rows and the channels' configured
weights. Whether a sink still needs a change is asked of the sink itself when it can be read, else of what it last
confirmed (``routing_sink_weights``). :meth:`RoutingStage.apply` writes what is pending without planning, for a
change made by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.alerts.recovery import passing
from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.errors import SinkError
from monitor.models import AlertState, ChannelStats, RoutingRow, WeightChange
from monitor.routing.base import WeightSink
from monitor.routing.plan import plan
from monitor.routing.smart import is_smart
from monitor.store import Store

__all__ = ["RoutingOutcome", "RoutingStage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingOutcome:
    """What the stage did: the weight changes decided, what the policy held back, and the weights the shop reads
    now (empty when routing is off or the sink cannot be read)."""

    changes: list[WeightChange] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)
    #: Changes a sink has not applied yet, and why: "channel: why" (e.g. dujiaoka waits for callbacks).
    waiting: list[str] = field(default_factory=list)


class RoutingStage:
    """Weights for one config, one store and its weight sinks (none: routing writes nothing)."""

    def __init__(self, cfg: LoadedConfig, store: Store, sinks: Sequence[WeightSink], notify: Sequence[str]) -> None:
        self.cfg = cfg
        self.store = store
        self.sinks = list(sinks)
        self.notify = list(notify)
        self._said: set[str] = set()  # warnings and suggestions already logged once

    def run(self, states: Mapping[tuple[str, str], AlertState], now: datetime,
            maintenance: Mapping[str, MaintenanceWindow],
            stats: Mapping[tuple[str, str], ChannelStats] | None = None) -> RoutingOutcome:
        """Plan this cycle's weights from ``states``, ``maintenance`` and (mode ``smart``) the window ``stats``,
        and apply them when the mode writes."""
        routing = self.cfg.monitor.routing
        if not self.sinks or routing.mode == "off":
            return RoutingOutcome()
        rows = self.store.routing_states()
        try:
            weights = self.shop_weights(rows)
        except SinkError as exc:
            log.warning("routing: %s", exc)
            return RoutingOutcome(held=[str(exc)])
        for ch, row in rows.items():
            if row.applied is not None and row.applied != row.target and weights.get(ch) == row.target:
                # The first sink holds a change another may still lack: it counts as applied only once
                # :meth:`apply` sees every sink hold it, so plan from the weight applied before.
                weights[ch] = row.applied
        recent = [w for w in self.store.weight_history(since=now - timedelta(hours=1))
                  if w.actor == "paymon" and w.new < w.old and not is_smart(w.reason)]
        decision = plan(self.cfg, states, maintenance, weights, rows, now=now, changes_last_hour=len(recent),
                        probes_ok=passing(rows, self.store.last_probes()), stats=stats)
        for msg in decision.held:
            self._once(msg, logging.WARNING, "routing held: %s", msg)
        if not routing.writes:  # suggest (or smart's shadow): say what would change, write nothing
            mode = "smart, shadow" if routing.mode == "smart" else routing.mode
            for c in decision.changes:
                self._once(f"suggest|{c.channel}|{c.old}|{c.new}", logging.INFO,
                           "routing suggestion (mode: %s, nothing written): %s %d -> %d (%s)",
                           mode, c.channel, c.old, c.new, c.reason)
            return RoutingOutcome(decision.changes, decision.held, weights)
        self.store.save_routing(decision.rows.values(), decision.changes, self.notify)
        applied = self.apply(now)
        return RoutingOutcome(decision.changes, decision.held + applied.held, applied.weights or weights,
                              applied.waiting)

    def apply(self, now: datetime) -> RoutingOutcome:
        """Write every routing row's target to each sink that does not hold it yet, and mark a weight applied once
        all sinks hold it. Plans nothing: a target saved by hand (``store.save_routing``) goes out as it is. The
        outcome's ``weights`` are what the first readable sink holds afterwards."""
        rows = self.store.routing_states()
        done: dict[str, int] = {ch: 0 for ch in rows}
        held: list[str] = []
        waiting: list[str] = []
        for sink in self.sinks:
            try:
                holds = self._holds(sink, rows)
                pending = {ch: rows[ch].target for ch, ok in holds.items() if not ok}
                waits = sink.apply(pending, now) if pending else {}
            except SinkError as exc:
                log.warning("routing: cannot write weights to %s (will retry): %s", sink.key, exc)
                held.append(f"{sink.key}: {exc}")
                continue
            for ch, why in waits.items():
                row = rows[ch]
                waiting.append(f"{ch}: {why}")
                self.store.note_sink_waiting(sink.key, ch, row.target, row.changed_at, why, self.notify, now)
                self._once(f"wait|{sink.key}|{ch}|{row.changed_at.isoformat()}|{row.target}", logging.WARNING,
                           "routing: %s waits before setting %s to %d: %s", sink.key, ch, row.target, why)
            if not sink.readable:
                self.store.confirm_sink(sink.key, {ch: w for ch, w in pending.items() if ch not in waits})
            for ch in rows:  # a channel this sink does not carry is as done as one it holds
                if ch not in waits:
                    done[ch] += 1
        for ch, row in rows.items():
            if done[ch] == len(self.sinks) and row.applied != row.target:
                self.store.mark_applied(ch, row.target)
        try:
            weights = self.shop_weights(self.store.routing_states()) if not held else {}
        except SinkError:
            weights = {}
        return RoutingOutcome(held=held, weights=weights, waiting=waiting)

    def shop_weights(self, rows: Mapping[str, RoutingRow]) -> dict[str, int]:
        """The weights the shop uses now: the first readable sink's (a switch read as the weight paymon keeps for
        an open gateway), else paymon's applied weights and, for channels it has no row for, the configured ones.
        Raises :class:`SinkError` when that sink cannot be read."""
        configured = {c.id: c.weight for c in self.cfg.channels}
        sink = next((s for s in self.sinks if s.readable), None)
        if sink is None:
            return {ch: _own_weight(rows.get(ch), w) for ch, w in configured.items()}
        read = sink.read()
        if not sink.switch:
            return read
        return {ch: _open_weight(rows.get(ch), configured.get(ch)) if is_open else 0 for ch, is_open in read.items()}

    def _holds(self, sink: WeightSink, rows: Mapping[str, RoutingRow]) -> dict[str, bool]:
        """Whether ``sink`` holds each channel's target (channels the sink does not carry are left out)."""
        if sink.readable:
            read = sink.read()
            if sink.switch:  # opening is asked every cycle: it only reopens what paymon closed, and may be partial
                return {ch: read[ch] == 0 and row.target == 0 for ch, row in rows.items() if ch in read}
            return {ch: read[ch] == row.target for ch, row in rows.items() if ch in read}
        confirmed = self.store.sink_weights(sink.key)
        # A sink paymon has not written yet holds what the shop had: the applied weight (recorded now, before
        # any write, so a change decided now stays pending for it whatever the other sinks do).
        first = {ch: row.applied for ch, row in rows.items() if ch not in confirmed and row.applied is not None}
        if first:
            self.store.confirm_sink(sink.key, first)
            confirmed.update(first)
        return {ch: confirmed.get(ch) == row.target for ch, row in rows.items()}

    def _once(self, key: str, level: int, msg: str, *args: object) -> None:
        if key not in self._said:
            log.log(level, msg, *args)
            self._said.add(key)


def _open_weight(row: RoutingRow | None, configured: int | None) -> int:
    """The weight an open gateway stands for: paymon's target when it is above 0 (an open that landed), else the
    weight it had before a closure still pending, else (opened by hand) the operator's baseline, never 0."""
    if row is None:
        return configured or 1
    if row.target > 0:
        return row.target
    if row.applied:
        return row.applied
    return row.baseline or configured or 1


def _own_weight(row: RoutingRow | None, configured: int) -> int:
    """Without a readable sink: the weight paymon last applied, else its target, else the configured weight."""
    if row is None:
        return configured
    return row.applied if row.applied is not None else row.target
