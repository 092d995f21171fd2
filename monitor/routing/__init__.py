"""Routing: which weight each channel should have (pure policy) and the sinks that write it where the shop reads."""

from typing import Any

from monitor.routing.webhook import WebhookWeightSink
from monitor.routing.yaml_file import YamlWeightSink

#: Weight sinks by ``routing.sink.kind``; one line per sink.
SINKS: dict[str, type[Any]] = {
    "yaml": YamlWeightSink,
    "webhook": WebhookWeightSink,
}

__all__ = ["SINKS", "WebhookWeightSink", "YamlWeightSink"]
