"""The daemon's own health: whether its evaluation cycles fail, since when and why.

``daemon_health`` holds one row (``id`` 1): when the evaluation cycles started failing (NULL while they succeed),
the last failure's reason, how many cycles failed in a row, and the last failure and success. ``paymon status``
and a restarted daemon read it, so a failure is never only in a log.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "daemon_health",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("failing_since", TS),
        sa.Column("reason", sa.String(500)),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", TS),
        sa.Column("last_success_at", TS),
    )


def downgrade() -> None:
    op.drop_table("daemon_health")
