"""Several weight sinks: what a write-only sink confirmed, and which shop gateways paymon closed.

``routing_sink_weights`` holds, per write-only sink (a configured UPDATE statement) and channel, the weight it
last confirmed, so a write that failed is retried and one that landed is not repeated. ``routing_closed`` lists
the dujiaoka ``pays`` rows paymon closed itself: paymon only ever reopens those, never one the operator closed.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "routing_sink_weights",
        sa.Column("sink", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("weight", sa.Integer, nullable=False),
    )
    op.create_table(
        "routing_closed",
        sa.Column("sink", sa.String(200), primary_key=True),
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("closed_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("routing_closed")
    op.drop_table("routing_sink_weights")
