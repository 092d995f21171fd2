"""Per-channel plugins from a registry of factories by channel ``kind`` (probe adapters, order queriers).

A registry maps a ``kind`` to what builds that kind's plugin for one channel (a class, or any callable taking
the channel's :class:`~monitor.config.ChannelConfig`); a factory raises ``ValueError`` when the channel cannot
have one (missing or unreadable credentials). :func:`build_plugins` builds a plugin for every channel it can and
says, per channel, why it could not: never a crash, since one bad channel must not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from monitor.config import ChannelConfig

__all__ = ["build_plugins"]

T = TypeVar("T")


def build_plugins(channels: Iterable[ChannelConfig], registry: Mapping[str, Callable[[ChannelConfig], T]],
                  unregistered: str) -> tuple[dict[str, T], dict[str, str]]:
    """A plugin per channel whose kind is in ``registry``; and, per channel that has none, why: ``unregistered``
    formatted with ``kind`` when its kind has no factory, else the factory's ``ValueError`` message."""
    plugins: dict[str, T] = {}
    problems: dict[str, str] = {}
    for ch in channels:
        factory = registry.get(ch.kind)
        if factory is None:
            problems[ch.id] = unregistered.format(kind=ch.kind)
            continue
        try:
            plugins[ch.id] = factory(ch)
        except ValueError as exc:
            problems[ch.id] = str(exc)
    return plugins, problems
