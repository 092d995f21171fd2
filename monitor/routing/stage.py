"""The routing stage of a cycle: read the weights the shop uses, ask :func:`~monitor.routing.plan.plan`, persist
the decision and write the new weights. The one place routing does I/O.

``routing.mode`` decides how far it goes: ``off`` does nothing, ``suggest`` logs what it would change and writes
nothing, ``auto`` records the decision (rows, changes and their notifications) before writing the sink, and marks a
weight applied only once the sink holds it, so a failed write is retried on the next cycle and never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.config import LoadedConfig
from monitor.config.maintenance import MaintenanceWindow
from monitor.errors import SinkError
from monitor.models import AlertState, ChannelStats, WeightChange
from monitor.routing.plan import plan
from monitor.routing.smart import is_smart
from monitor.routing.yaml_file import YamlWeightSink
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


class RoutingStage:
    """Weights for one config, one store and one weight sink (None: no sink configured)."""

    def __init__(self, cfg: LoadedConfig, store: Store, sink: YamlWeightSink | None,
                 notify: Sequence[str]) -> None:
        self.cfg = cfg
        self.store = store
        self.sink = sink
        self.notify = list(notify)
        self._said: set[str] = set()  # warnings and suggestions already logged once

    def run(self, states: Mapping[tuple[str, str], AlertState], now: datetime,
            maintenance: Mapping[str, MaintenanceWindow],
            stats: Mapping[tuple[str, str], ChannelStats] | None = None) -> RoutingOutcome:
        routing = self.cfg.monitor.routing
        if self.sink is None or routing.mode == "off":
            return RoutingOutcome()
        try:
            weights = self.sink.read()
        except SinkError as exc:
            log.warning("routing: %s", exc)
            return RoutingOutcome(held=[str(exc)])
        recent = [w for w in self.store.weight_history(since=now - timedelta(hours=1))
                  if w.actor == "paymon" and w.new < w.old and not is_smart(w.reason)]
        decision = plan(self.cfg, states, maintenance, weights, self.store.routing_states(), now=now,
                        changes_last_hour=len(recent), stats=stats)
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
        pending = {ch: row.target for ch, row in decision.rows.items() if weights.get(ch) != row.target}
        if pending:
            try:
                self.sink.write(pending)
            except SinkError as exc:
                log.warning("routing: cannot write weights (will retry): %s", exc)
                return RoutingOutcome(decision.changes, decision.held, weights)
            weights.update(pending)
        for ch, row in decision.rows.items():
            if row.applied != weights.get(ch) and weights.get(ch) == row.target:
                self.store.mark_applied(ch, row.target)
        return RoutingOutcome(decision.changes, decision.held, weights)

    def _once(self, key: str, level: int, msg: str, *args: object) -> None:
        if key not in self._said:
            log.log(level, msg, *args)
            self._said.add(key)
