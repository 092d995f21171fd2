"""Storage: SQLAlchemy tables, Alembic migrations applied at start, and the ``Store`` API.

This package is the only place that writes SQL. SQLite (WAL) by default; PostgreSQL works the same.
"""

from monitor.store.store import Checkpoint, OutboxItem, RoutingRow, Silence, Store

__all__ = ["Checkpoint", "OutboxItem", "RoutingRow", "Silence", "Store"]
