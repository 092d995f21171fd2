"""Probe results carry a measured value (the balance probe's unsettled balance).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("probe_results") as batch:
        batch.add_column(sa.Column("value", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("probe_results") as batch:
        batch.drop_column("value")
