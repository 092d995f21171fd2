"""What every facet of the :class:`~monitor.store.store.Store` shares: one engine and one clock.

The store is split by what it owns (orders, probes, outbox, alerts, routing); each facet is a mixin class in its
own module, and ``Store`` combines them, so callers keep one object and each concern keeps one file.
"""

from __future__ import annotations

from sqlalchemy import Engine

from monitor.clock import Clock

__all__ = ["Facet"]


class Facet:
    """The state a facet's methods work on; :class:`~monitor.store.store.Store` sets both."""

    #: The database every facet reads and writes; each write is one transaction on it.
    engine: Engine
    #: What "now" is for bookkeeping columns (``updated_at``, ``created_at`` of outbox rows, silence starts).
    clock: Clock
