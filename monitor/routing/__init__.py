"""Routing: which weight each channel should have (pure policy) and the sinks that write it where the shop reads."""

from monitor.routing.yaml_file import YamlWeightSink

#: Weight sinks by ``routing.sink.kind``; one line per sink.
SINKS = {"yaml": YamlWeightSink}

__all__ = ["SINKS", "YamlWeightSink"]
