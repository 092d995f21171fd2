"""Observations: probe results, one row per order, ingest checkpoints.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "probe_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("probe", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_probe_results_channel_probe_started", "probe_results", ["channel", "probe", "started_at"])
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(150), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("method", sa.String(32)),
        sa.Column("amount", sa.String(32)),
        sa.Column("trade_no", sa.String(200)),
        sa.Column("created_at", TS),
        sa.Column("redirected_at", TS),
        sa.Column("returned_at", TS),
        sa.Column("callback_at", TS),
        sa.Column("unverified_callback_at", TS),
        sa.Column("channel_paid_at", TS),
        sa.Column("shop_paid_at", TS),
        sa.Column("delivered_at", TS),
        sa.Column("expired_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_orders_channel_created", "orders", ["channel", "created_at"])
    op.create_index("ix_orders_updated", "orders", ["updated_at"])
    op.create_table(
        "ingest_checkpoints",
        sa.Column("source", sa.String(255), primary_key=True),
        sa.Column("file_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingest_checkpoints")
    op.drop_table("orders")
    op.drop_table("probe_results")
