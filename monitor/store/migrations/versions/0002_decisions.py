"""Decisions and actions: alert state and history, notification outbox, routing state, weight audit, silences.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Microseconds on MySQL/MariaDB too (their DATETIME drops fractions by default).
TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pending_since", TS),
        sa.Column("fired_at", TS),
        sa.Column("last_notified_at", TS),
        sa.Column("reminders", sa.Integer, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "alert_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_alert_history_at", "alert_history", ["at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sink", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("failed_at", TS),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("sink", "dedupe_key", name="uq_outbox_sink_key"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sink", "sent_at", "failed_at"])
    op.create_table(
        "weight_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("old", sa.Integer, nullable=False),
        sa.Column("new", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_weight_changes_channel_at", "weight_changes", ["channel", "at"])
    op.create_table(
        "routing_state",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("baseline", sa.Integer, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("applied", sa.Integer),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("healthy_since", TS),
        sa.Column("operator_hold", sa.Boolean, nullable=False),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for name in ("silences", "routing_state", "weight_changes", "outbox", "alert_history", "alert_states"):
        op.drop_table(name)
