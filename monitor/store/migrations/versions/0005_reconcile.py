"""Reconciliation: when each unpaid order was last asked about, the lost orders found, and notify replays.

``reconcile_checks`` is what lets the reconciler back off (an order is asked again only when it has doubled its
age since the last question) and survive a restart without asking everything again. ``lost_orders`` holds each
lost order once, with what the channel said, so it is reported exactly once and its recovery can be told.
``notify_replays`` is the audit trail of ``reconcile.replay_notify``: one row per replay, written before the
notify is sent, so a crash never causes a second replay.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "reconcile_checks",
        sa.Column("order_id", sa.String(150), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("checks", sa.Integer, nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
    )
    op.create_table(
        "lost_orders",
        sa.Column("order_id", sa.String(150), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(32)),
        sa.Column("trade_no", sa.String(200)),
        sa.Column("channel_paid_at", TS),
        sa.Column("evidence", sa.String(32), nullable=False),
        sa.Column("found_at", TS, nullable=False),
        sa.Column("recovered_at", TS),
    )
    op.create_index("ix_lost_orders_found", "lost_orders", ["found_at"])
    op.create_table(
        "notify_replays",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(150), nullable=False, unique=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("acknowledged", sa.Boolean),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notify_replays")
    op.drop_index("ix_lost_orders_found", "lost_orders")
    op.drop_table("lost_orders")
    op.drop_table("reconcile_checks")
