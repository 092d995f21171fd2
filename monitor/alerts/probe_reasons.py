"""Why a probe alert fires, in the probes' own words: the last results' outcomes and details, newest first.

A ``channel_down`` alert that only says "probe failures in a row = 3" sends the operator to the logs; the results
paymon stored already say what went wrong (``HTTP 500``, a timeout after 2 s, HTML instead of JSON, a refused
connection, a signature mismatch). :func:`with_probe_reasons` attaches them to the events, :func:`probe_reason`
says them in one phrase. Both pure; the store is read through the ``recent`` callable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from monitor.config.rules import PROBE_SIGNALS, Rule
from monitor.models import AlertEvent, ProbeResult

__all__ = ["LAST_PROBES", "probe_reason", "with_probe_reasons"]

#: How many of the last probe results an alert names at most.
LAST_PROBES = 5
_DETAIL = 120

#: A probe's newest results: ``recent(channel=..., probe=..., limit=...)`` (``Store.probe_results``).
Recent = Callable[..., list[ProbeResult]]

_OUTCOME = {
    "en": {"timeout": "timeout", "connect_error": "connection failed", "http_error": "HTTP error",
           "bad_signature": "signature mismatch", "bad_response": "bad answer", "business_error": "gateway refused",
           "maintenance": "maintenance", "ok": "ok"},
    "zh": {"timeout": "超时", "connect_error": "连接失败", "http_error": "HTTP 错误", "bad_signature": "验签失败",
           "bad_response": "响应异常", "business_error": "通道拒绝", "maintenance": "维护中", "ok": "正常"},
}


def with_probe_reasons(events: Sequence[AlertEvent], rules: Iterable[Rule], recent: Recent) -> list[AlertEvent]:
    """``events`` with, on every firing or reminder of a probe-signal rule, the last probes of the probe it
    watches (as many as failed in a row, at least 1 and at most :data:`LAST_PROBES`)."""
    probe_of = {r.name: r.probe or "query" for r in rules if r.signal in PROBE_SIGNALS}
    out: list[AlertEvent] = []
    for e in events:
        probe = probe_of.get(e.rule)
        if probe is None or e.kind == "resolved":
            out.append(e)
            continue
        n = LAST_PROBES if e.signal != "probe_failures_in_a_row" or e.value is None else int(
            min(max(e.value, 1), LAST_PROBES))
        last = recent(channel=e.channel, probe=probe, limit=n)
        out.append(dataclasses.replace(e, probes=tuple((r.outcome, r.detail) for r in last)))
    return out


def _said(p: Mapping[str, Any], language: str) -> str:
    words = _OUTCOME["zh" if language == "zh" else "en"]
    outcome, detail = str(p.get("outcome") or "?"), " ".join(str(p.get("detail") or "").split())
    label = words.get(outcome, outcome)
    if len(detail) > _DETAIL:
        detail = detail[:_DETAIL - 1] + "…"
    return f"{label} ({detail})" if detail else label


def probe_reason(probes: Sequence[Mapping[str, Any]], *, language: str = "zh") -> str:
    """``last 3 probes (newest first): HTTP error (act=query: HTTP 500) ×3`` — runs of the same words are said
    once with ``×n`` (zh ``最近 3 次探测 (新→旧): …``)."""
    runs: list[tuple[str, int]] = []
    for p in probes:
        said = _said(p, language)
        if runs and runs[-1][0] == said:
            runs[-1] = (said, runs[-1][1] + 1)
        else:
            runs.append((said, 1))
    text = "; ".join(said if n == 1 else f"{said} ×{n}" for said, n in runs)
    n = len(probes)
    if language == "zh":
        return f"最近 {n} 次探测 (新→旧): {text}"
    return f"last {n} probe{'' if n == 1 else 's'} (newest first): {text}"
