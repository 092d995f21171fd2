"""Alembic environment: paymon runs migrations itself at start, on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from monitor.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - paymon always passes its connection
    raise RuntimeError("paymon migrations run through monitor.store.Store.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
