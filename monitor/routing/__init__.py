"""Routing: which weight each channel should have (pure policy) and the sinks that write it where the shop reads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from monitor.config import LoadedConfig
from monitor.routing.base import WeightSink
from monitor.routing.sql import sql_sink
from monitor.routing.webhook import WebhookWeightSink, webhook_sink
from monitor.routing.yaml_file import YamlWeightSink, yaml_sink
from monitor.store import Store

log = logging.getLogger(__name__)

#: Builds a sink from its ``routing.sinks[*]`` entry, the whole config and the store.
SinkFactory = Callable[[Any, LoadedConfig, Store], WeightSink]

#: Weight sinks by ``kind``; one line per sink.
SINKS: dict[str, SinkFactory] = {
    "yaml": yaml_sink,
    "sql": sql_sink,
    "webhook": webhook_sink,
}


def build_sinks(cfg: LoadedConfig, store: Store) -> list[WeightSink]:
    """Every sink of ``routing.sinks`` (or the one ``routing.sink``) that this paymon can write, in order; a kind
    it cannot write yet is left out with a warning (``paymon check-config`` says so too)."""
    out = []
    for sink in cfg.monitor.routing.all_sinks:
        factory = SINKS.get(sink.kind)
        if factory is None:
            log.warning("routing sink %s is not available yet; it gets no weights", sink.kind)
            continue
        out.append(factory(sink, cfg, store))
    return out


__all__ = ["SINKS", "SinkFactory", "WebhookWeightSink", "WeightSink", "YamlWeightSink", "build_sinks"]
