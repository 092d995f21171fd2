"""Checks that span items or files: unique ids and names, and references to channels and rules that exist.

They read the plain documents, not the validated models, so they still run (and report with lines) when
some other part of a file is invalid.
"""

from __future__ import annotations

import difflib
import os.path
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monitor.config.document import DocPath, Document, Problem
from monitor.config.settings import MonitorConfig

__all__ = ["cross_check"]


def cross_check(monitor: Document, channels: Document, config: MonitorConfig | None) -> list[Problem]:
    """Every duplicate and dangling reference in the two documents."""
    problems = list(_duplicates(channels, "channels", "id", "channel id"))
    problems += _duplicates(monitor, "rules", "name", "rule name")
    known = _channel_ids(channels)
    if known is not None:
        problems += _channel_references(monitor, known, channels.path.name)
    problems += _inhibits(monitor)
    problems += _sink_file(monitor, channels)
    if config is not None:
        problems += _source_ids(monitor, config)
    return problems


def _items(doc: Document, section: str) -> list[tuple[int, dict[str, Any]]]:
    data = doc.data if isinstance(doc.data, dict) else {}
    items = data.get(section)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def _duplicates(doc: Document, section: str, key: str, what: str) -> Iterator[Problem]:
    first_line: dict[str, int] = {}
    for index, item in _items(doc, section):
        value = item.get(key)
        if not isinstance(value, str):
            continue
        path: DocPath = (section, index, key)
        if value in first_line:
            yield doc.problem(path, f"duplicate {what} {value!r} (first used on line {first_line[value]})")
        else:
            first_line[value] = doc.line_of(path)


def _channel_ids(channels: Document) -> list[str] | None:
    """Channel ids defined in channels.yaml, or None when the file could not be read as a channel list."""
    if not channels.parsed or not isinstance(channels.data, dict):
        return None
    if not isinstance(channels.data.get("channels"), list):
        return None
    ids = [item.get("id") for _index, item in _items(channels, "channels")]
    return list(dict.fromkeys(value for value in ids if isinstance(value, str)))


def _channel_references(monitor: Document, known: list[str], channels_file: str) -> Iterator[Problem]:
    """Rule scopes, source mappings and SQL-sink mappings must name channels of channels.yaml."""
    for path, value in _references(monitor):
        if isinstance(value, str) and value not in known:
            yield monitor.problem(path, _unknown("channel", value, known, f"{channels_file} defines"))


def _references(monitor: Document) -> Iterator[tuple[DocPath, Any]]:
    for index, rule in _items(monitor, "rules"):
        scope = rule.get("channels")
        if isinstance(scope, list):
            for position, value in enumerate(scope):
                yield ("rules", index, "channels", position), value
    for index, source in _items(monitor, "sources"):
        for key in ("callbacks", "channels"):
            mapping = source.get(key)
            if isinstance(mapping, dict):
                for map_key, value in mapping.items():
                    yield ("sources", index, key, map_key), value
    routing = monitor.data.get("routing") if isinstance(monitor.data, dict) else None
    sink = routing.get("sink") if isinstance(routing, dict) else None
    mapping = sink.get("channels") if isinstance(sink, dict) else None
    if isinstance(mapping, dict):
        for map_key, value in mapping.items():
            yield ("routing", "sink", "channels", map_key), value


def _inhibits(monitor: Document) -> Iterator[Problem]:
    rules = _items(monitor, "rules")
    names = list(dict.fromkeys(name for _index, rule in rules if isinstance(name := rule.get("name"), str)))
    for index, rule in rules:
        inhibits = rule.get("inhibits")
        if not isinstance(inhibits, list):
            continue
        for position, value in enumerate(inhibits):
            path: DocPath = ("rules", index, "inhibits", position)
            if value == rule.get("name"):
                yield monitor.problem(path, "a rule cannot inhibit itself")
            elif value not in names:
                yield monitor.problem(path, _unknown("rule", value, names, "rules are"))


def _unknown(what: str, value: Any, known: list[str], known_label: str) -> str:
    message = f"unknown {what} {value!r} ({known_label}: {', '.join(known) or 'none'})"
    close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.6)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def _source_ids(monitor: Document, config: MonitorConfig) -> Iterator[Problem]:
    first: dict[str, int] = {}
    labelled: dict[str, int] = {}
    for index, source in enumerate(config.sources):
        path: DocPath = ("sources", index)
        if source.source_id in first:
            yield monitor.problem(
                path,
                f"reads the same source as line {first[source.source_id]} ({source.source_id!r}); "
                "give one of them a distinct 'name'",
            )
            continue
        first[source.source_id] = monitor.line_of(path)
        if source.label in labelled:
            yield monitor.problem(
                path,
                f"would have the same metric label as the source of line {labelled[source.label]} "
                f"({source.label!r}); give one of them a distinct 'name'",
            )
        else:
            labelled[source.label] = monitor.line_of(path)


def _sink_file(monitor: Document, channels: Document) -> Iterator[Problem]:
    """A YAML weight sink (``routing.sink`` or any of ``routing.sinks``) must name an existing file (a missing
    channels file is reported on its own), or one its ``seed`` (an existing file) will create; a folder on the way
    that is a file is an error either way."""
    routing = monitor.data.get("routing") if isinstance(monitor.data, dict) else None
    if not isinstance(routing, dict):
        return
    places: list[tuple[DocPath, object]] = [(("routing", "sink"), routing.get("sink"))]
    if isinstance(routing.get("sinks"), list):
        places += [(("routing", "sinks", i), sink) for i, sink in enumerate(routing["sinks"])]
    for at, sink in places:
        if isinstance(sink, dict) and sink.get("kind") == "yaml":
            yield from _yaml_sink_file(monitor, channels, at, sink)


def _yaml_sink_file(monitor: Document, channels: Document, at: DocPath,
                    sink: dict[str, object]) -> Iterator[Problem]:
    named, seed = sink.get("path"), sink.get("seed")
    where: DocPath = (*at, "path")
    if not isinstance(named, str) or not named.strip() or monitor.is_failed(where):
        return
    target = Path(os.path.normpath(monitor.path.parent / Path(named).expanduser()))
    if target == channels.path or target.is_file():
        return
    if target.exists():
        yield monitor.problem(where, f"not a file: {named}")
    elif not isinstance(seed, str) or not seed.strip():
        yield monitor.problem(where, f"no such file: {named} (add 'seed: <example file>' to create it on first use)")
    elif not (folder := _nearest_existing(target.parent)).is_dir():
        yield monitor.problem(where, f"cannot create {named}: {folder} is not a folder")
    elif not monitor.is_failed((*at, "seed")):
        source = Path(os.path.normpath(monitor.path.parent / Path(seed).expanduser()))
        if not source.is_file():
            yield monitor.problem((*at, "seed"), f"no such file: {seed}")


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (what creating the missing folders would start from)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
