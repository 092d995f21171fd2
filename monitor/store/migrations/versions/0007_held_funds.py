"""Held funds, and never an invented pay time.

``held_funds`` records each order whose channel holds the buyer's money without completing the payment (epay 3
已冻结, EP-new 4 预授权) once, so it is reported once and its release can be told. ``orders.paid_learned_at`` (and
its copy on ``lost_orders``) is when paymon learned from an order query that an order was paid, the channel giving
no pay time: ``channel_paid_at`` now holds only pay times the channel gave. ``reconcile_checks.state`` is what the
last answer meant (paid, held, refunded, closed, unpaid…), next to the channel's own word.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("paid_learned_at", TS))
    with op.batch_alter_table("lost_orders") as batch:
        batch.add_column(sa.Column("paid_learned_at", TS))
    with op.batch_alter_table("reconcile_checks") as batch:
        batch.add_column(sa.Column("state", sa.String(16)))
    op.create_table(
        "held_funds",
        sa.Column("order_id", sa.String(150), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(32)),
        sa.Column("trade_no", sa.String(200)),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("released_at", TS),
        sa.Column("release", sa.String(16)),
    )
    op.create_index("ix_held_funds_seen", "held_funds", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_held_funds_seen", "held_funds")
    op.drop_table("held_funds")
    with op.batch_alter_table("reconcile_checks") as batch:
        batch.drop_column("state")
    with op.batch_alter_table("lost_orders") as batch:
        batch.drop_column("paid_learned_at")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("paid_learned_at")
