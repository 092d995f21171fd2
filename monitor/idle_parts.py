"""Configured parts that cannot act: what ``paymon check-config`` warns about, one line each.

A valid config can still do less than it says: a Telegram section while paymon has no Telegram sender, no
notifier at all, a channel without a runnable probe, a rule whose signal
nothing feeds or whose detector cannot watch its signal. None of these stops paymon (each is skipped at run
time), which is exactly why the operator should hear of them before relying on the config. Pure: config in,
warnings out.
"""

from __future__ import annotations

from collections.abc import Iterator

from monitor.config import ChannelConfig, DujiaokaSource, JsonlSource, LoadedConfig, NginxSource
from monitor.config.rules import PROBE_SIGNALS, Rule
from monitor.models import PROBE_TYPES

__all__ = ["has_order_source", "idle_parts"]

#: Signals read from the orders (an order source must bring the channel's orders).
_ORDER_SIGNALS = frozenset({"success_ratio", "orders", "lost_orders", "lost_order_ratio", "callback_latency_p50",
                            "callback_latency_p95", "callback_latency_p99", "pending_orders", "bad_signatures"})


def idle_parts(cfg: LoadedConfig) -> list[str]:
    """A warning (without the ``warning:`` prefix) for every configured part that cannot act."""
    runnable = runnable_probes(cfg.channels)
    return [*_notifiers(cfg), *_channels(cfg), *_rules(cfg, runnable)]


def runnable_probes(channels: tuple[ChannelConfig, ...]) -> dict[str, set[str]]:
    """Per channel, the configured probes that will be scheduled (its kind has an adapter that supports them and
    the adapter can be built)."""
    from monitor.plugins import build_plugins
    from monitor.probes import ADAPTERS

    adapters, _ = build_plugins(channels, ADAPTERS, "")
    out: dict[str, set[str]] = {}
    for ch in channels:
        adapter = adapters.get(ch.id)
        supported = set(adapter.supports) if adapter is not None else set()
        out[ch.id] = {p for p in PROBE_TYPES if getattr(ch.probes, p) is not None and p in supported}
    return out


def _notifiers(cfg: LoadedConfig) -> Iterator[str]:
    notify = cfg.monitor.notify
    if notify.telegram is not None:
        yield ("notify.telegram is configured, but this paymon has no Telegram sender: nothing is sent to Telegram "
               "(notifications go to the console instead)")
    elif not notify.console:
        yield ("notify: no notifier is configured (console is off and there is no other sink): alerts, lost "
               "orders and failing evaluation cycles are recorded but reach no one")


def has_order_source(cfg: LoadedConfig, channel: str) -> bool:
    """Whether some configured source can bring real orders of ``channel`` (a JSONL log names any channel; an
    nginx log or a dujiaoka database only the channels its mapping names)."""
    for src in cfg.monitor.sources:
        if isinstance(src, JsonlSource):
            return True
        if isinstance(src, NginxSource) and channel in src.callbacks.values():
            return True
        if isinstance(src, DujiaokaSource) and channel in src.channels.values():
            return True
    return False


def _channels(cfg: LoadedConfig) -> Iterator[str]:
    from monitor.probes import ADAPTERS

    for ch in cfg.channels:
        configured = [p for p in PROBE_TYPES if getattr(ch.probes, p) is not None]
        if not configured:
            yield (f"channel {ch.id}: no probe is configured: only its orders can tell whether it works"
                   if has_order_source(cfg, ch.id) else
                   f"channel {ch.id}: no probe is configured and no order source brings its orders: nothing "
                   "watches it")
            continue
        factory = ADAPTERS.get(ch.kind)
        if factory is None:
            continue  # the missing adapter itself is already said (its probes will not run)
        unsupported = [p for p in configured if p not in getattr(factory, "supports", configured)]
        if unsupported:
            yield (f"channel {ch.id}: probe {', '.join(unsupported)} is not supported for kind {ch.kind}; "
                   f"{'it' if len(unsupported) == 1 else 'they'} will not run")


def _rules(cfg: LoadedConfig, runnable: dict[str, set[str]]) -> Iterator[str]:
    from monitor.alerts.evaluate import skipped_detectors

    skipped = {r.name for r in skipped_detectors(cfg)}
    for rule in cfg.monitor.rules:
        scope = [ch for ch in cfg.channels if rule.applies_to(ch)]
        if rule.name in skipped:
            yield (f"rule {rule.name}: detector {rule.detector} cannot watch signal {rule.signal} (it watches "
                   "success_ratio or probe_success_ratio); the rule is skipped")
        elif not scope:
            yield f"rule {rule.name}: applies to no configured channel; it can never fire"
        elif (why := _cannot_run(cfg, rule, scope, runnable)) is not None:
            yield f"rule {rule.name}: {why}; it can never fire"


def _cannot_run(cfg: LoadedConfig, rule: Rule, scope: list[ChannelConfig],
                runnable: dict[str, set[str]]) -> str | None:
    """Why no channel in the rule's scope can feed its signal, or None when one can."""
    if rule.signal in PROBE_SIGNALS:
        probe = rule.probe or "query"
        if not any(probe in runnable[ch.id] for ch in scope):
            return f"watches probe {probe}, which no channel it applies to runs"
    elif rule.signal == "unsettled_balance":
        if not any("balance" in runnable[ch.id] for ch in scope):
            return "unsettled_balance comes from the balance probe, which no channel it applies to runs"
    elif rule.signal == "merchant_banned":
        if not any(runnable[ch.id] for ch in scope):
            return "merchant_banned comes from the probes, and no channel it applies to runs one"
    elif rule.signal in _ORDER_SIGNALS and not any(has_order_source(cfg, ch.id) for ch in scope):
        return f"{rule.signal} comes from the orders, and no order source brings those of the channels it applies to"
    return None
