"""Storage: SQLAlchemy tables, Alembic migrations applied at start, and the ``Store`` API.

This package is the only place that writes SQL. SQLite (WAL) by default; PostgreSQL works the same. ``Store`` is
made of one facet per concern (``probes``, ``orders``, ``outbox``, ``alerts``, ``routing``); reconciliation's reads
and writes are ``reconcile.ReconcileStore(store)``. The value types re-exported here live in :mod:`monitor.models`.
"""

from monitor.models import Checkpoint, OutboxItem, RoutingRow, Silence
from monitor.store.store import Store

__all__ = ["Checkpoint", "OutboxItem", "RoutingRow", "Silence", "Store"]
