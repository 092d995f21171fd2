"""Alert states carry the statistical detector's state (the CUSUM statistic), so a restart resumes it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.add_column(sa.Column("detector", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.drop_column("detector")
