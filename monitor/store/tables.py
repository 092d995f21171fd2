"""The schema at the newest migration, as SQLAlchemy Core tables.

Migrations in ``migrations/versions`` create these tables; a test checks that the migrated schema and this
module agree, so the two cannot drift. Every time is stored as UTC (``UTCDateTime``) and comes back aware.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

from monitor.clock import utc

__all__ = [
    "UTCDateTime",
    "alert_history",
    "alert_states",
    "daemon_health",
    "ingest_checkpoints",
    "metadata",
    "orders",
    "outbox",
    "held_funds",
    "lost_orders",
    "notify_replays",
    "probe_results",
    "reconcile_checks",
    "routing_closed",
    "routing_sink_weights",
    "routing_state",
    "silences",
    "weight_changes",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware.

    SQLite keeps no zone and hands back naive values; PostgreSQL returns aware ones. Both come out as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # MySQL/MariaDB DATETIME drops fractions of a second unless asked for them.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass aware UTC times")
        v = utc(value)
        # SQLite and MySQL have no zone: store naive UTC there.
        return v.replace(tzinfo=None) if dialect.name in ("sqlite", "mysql", "mariadb") else v

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


metadata = MetaData()

probe_results = Table(
    "probe_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("probe", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("code", String(64)),
    Column("detail", Text, nullable=False, default=""),
    Column("value", Float),
    Index("ix_probe_results_channel_probe_started", "channel", "probe", "started_at"),
)

# One row per order, with the time each lifecycle step was first seen.
orders = Table(
    "orders",
    metadata,
    Column("order_id", String(150), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("method", String(32)),
    Column("amount", String(32)),
    Column("trade_no", String(200)),
    Column("created_at", UTCDateTime),
    Column("redirected_at", UTCDateTime),
    Column("returned_at", UTCDateTime),
    Column("callback_at", UTCDateTime),
    Column("unverified_callback_at", UTCDateTime),
    Column("channel_paid_at", UTCDateTime),
    Column("shop_paid_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("expired_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # When paymon learned from an order query that the order was paid, the channel giving no pay time. Never a pay
    # time (``channel_paid_at`` holds only times the channel gave).
    Column("paid_learned_at", UTCDateTime),
    Index("ix_orders_channel_created", "channel", "created_at"),
    Index("ix_orders_updated", "updated_at"),
)

ingest_checkpoints = Table(
    "ingest_checkpoints",
    metadata,
    Column("source", String(255), primary_key=True),
    Column("file_id", String(128), nullable=False, default=""),
    Column("position", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
    # sha256 (hex) of the file's first ``fingerprint_size`` bytes: copytruncate detection (``Checkpoint``).
    Column("fingerprint", String(64)),
    Column("fingerprint_size", Integer),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("pending_since", UTCDateTime),
    Column("fired_at", UTCDateTime),
    Column("last_notified_at", UTCDateTime),
    Column("reminders", Integer, nullable=False, default=0),
    Column("value", Float),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("detector", Text),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("summary", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_alert_history_at", "at"),
)

# Notifications waiting for (or done with) delivery. ``dedupe_key`` makes enqueueing idempotent.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sink", String(32), nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    Column("last_error", Text),
    UniqueConstraint("sink", "dedupe_key", name="uq_outbox_sink_key"),
    Index("ix_outbox_pending", "sink", "sent_at", "failed_at"),
)

weight_changes = Table(
    "weight_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("old", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rule", String(64)),
    Column("actor", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_weight_changes_channel_at", "channel", "at"),
)

# What paymon wants each channel's weight to be (``target``), what it last wrote (``applied``), and the
# operator's own weight (``baseline``) that restores return to.
routing_state = Table(
    "routing_state",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("baseline", Integer, nullable=False),
    Column("target", Integer, nullable=False),
    Column("applied", Integer),
    Column("step", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=False, default=""),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("healthy_since", UTCDateTime),
    # The operator set this weight by hand while an alert was firing: leave it until that alert resolves.
    Column("operator_hold", Boolean, nullable=False, default=False),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("rule", String(64)),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
)

# When the reconciler last asked the channel about an unpaid order, how often, and what the channel said.
reconcile_checks = Table(
    "reconcile_checks",
    metadata,
    Column("order_id", String(150), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("checks", Integer, nullable=False),
    Column("status", String(64), nullable=False),
    # What the last answer means: paid / held / refunded / closed / unpaid / unknown / not_found / no_answer.
    Column("state", String(16)),
)

# Every lost order (paid at the channel, no verified callback by the deadline), recorded once when reported.
lost_orders = Table(
    "lost_orders",
    metadata,
    Column("order_id", String(150), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("amount", String(32)),
    Column("trade_no", String(200)),
    Column("channel_paid_at", UTCDateTime),
    Column("evidence", String(32), nullable=False),
    Column("found_at", UTCDateTime, nullable=False),
    Column("recovered_at", UTCDateTime),
    Column("paid_learned_at", UTCDateTime),
    Index("ix_lost_orders_found", "found_at"),
)

# Held funds (the channel holds the buyer's money without completing the payment: epay 3 已冻结, EP-new 4 预授权),
# recorded once each when reported; released when the channel says something else or the shop completes the order.
held_funds = Table(
    "held_funds",
    metadata,
    Column("order_id", String(150), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("amount", String(32)),
    Column("trade_no", String(200)),
    Column("status", String(64), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
    Column("release", String(16)),
    Index("ix_held_funds_seen", "seen_at"),
)

# The audit trail of reconcile.replay_notify: one row per order, written before the notify goes out.
notify_replays = Table(
    "notify_replays",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(150), nullable=False, unique=True),
    Column("channel", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("acknowledged", Boolean),
    Column("detail", Text, nullable=False),
)

# The daemon's evaluation health, one row (id 1): failing since when and why (NULL while cycles succeed).
daemon_health = Table(
    "daemon_health",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("failing_since", UTCDateTime),
    Column("reason", String(500)),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
)

# What a write-only weight sink (a configured UPDATE) last confirmed per channel: the routing stage writes again
# whatever differs from the target.
routing_sink_weights = Table(
    "routing_sink_weights",
    metadata,
    Column("sink", String(200), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("weight", Integer, nullable=False),
)

# The shop's gateways paymon itself closed (dujiaoka's ``pays`` rows): only these are ever opened again, so a
# gateway the operator closed by hand stays closed. Written before the close, removed after the reopen.
routing_closed = Table(
    "routing_closed",
    metadata,
    Column("sink", String(200), primary_key=True),
    Column("row_id", Integer, primary_key=True, autoincrement=False),
    Column("channel", String(64), nullable=False),
    Column("closed_at", UTCDateTime, nullable=False),
)
