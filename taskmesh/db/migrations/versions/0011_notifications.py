"""Notifications: channels (webhooks with a signing secret), rules (events of a job or of the
jobs a label selector picks), deliveries (the outbox: one row per event and channel, with its
retries) and the cursors the schedulers' event scan keeps.

Nothing is added to the statements that trigger, claim or end runs. The scan reads finished
runs through runs_finished, a partial index that only the version ending a run enters (one
index insertion per finished run), and skipped slots through skipped_slots_by_record_time.
runs_finished is built in the migration's transaction (taskmesh.db.schema runs every revision in
one, under its advisory lock, where CREATE INDEX CONCURRENTLY cannot run): runs are not writable
while it builds, a few seconds per million runs; build it CONCURRENTLY by hand beforehand on a
large table (the IF NOT EXISTS below then keeps it).

The cursors start at the upgrade: runs that ended before it notify nobody.

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen: taskmesh.notify.events.EventType and DeliveryState when this revision was written.
EVENT_TYPES = ("RUN_FAILED", "JOB_RECOVERED", "SLOT_MISFIRED", "SLOT_SKIPPED", "RUN_STUCK", "RUN_FINISHED", "TEST")
DELIVERY_STATES = ("PENDING", "DELIVERED", "FAILED")
FORMATS = ("GENERIC", "SLACK")
CURSORS = ("runs", "skipped_slots", "stuck")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _time(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "notification_channels",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False, server_default="GENERIC"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        _time("create_time", nullable=False),
        _time("update_time", nullable=False),
        sa.CheckConstraint(_in("format", FORMATS), name="notification_channels_format"),
    )
    op.create_table(
        "notification_rules",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column(
            "channel_id", UUID, sa.ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("job_id", UUID, sa.ForeignKey("jobs.id", ondelete="CASCADE")),
        sa.Column("label_selector", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("events", ARRAY(sa.Text), nullable=False),
        sa.Column("stuck_after_seconds", sa.Float, nullable=False, server_default="300"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        _time("create_time", nullable=False),
        _time("update_time", nullable=False),
    )
    op.create_index("notification_rules_channel", "notification_rules", ["channel_id"])
    op.create_index("notification_rules_job", "notification_rules", ["job_id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column(
            "channel_id", UUID, sa.ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False
        ),
        # History outlives rules and jobs: no foreign keys.
        sa.Column("rule_id", UUID),
        sa.Column("job_id", UUID),
        sa.Column("run_id", UUID),
        sa.Column("event", JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="PENDING"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _time("create_time", nullable=False, server_default=sa.func.clock_timestamp()),
        _time("next_attempt_at", nullable=False, server_default=sa.func.clock_timestamp()),
        # Set while a delivery loop posts it; past it, another loop may take it again.
        _time("lease_until"),
        _time("last_attempt_time"),
        _time("deliver_time"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_status_code", sa.Integer, nullable=False, server_default="0"),
        sa.Column("response_excerpt", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("event_id", "channel_id", name="notification_deliveries_once"),
        sa.CheckConstraint(_in("state", DELIVERY_STATES), name="notification_deliveries_state"),
        sa.CheckConstraint(_in("event_type", EVENT_TYPES), name="notification_deliveries_event_type"),
    )
    op.create_index(
        "notification_deliveries_due",
        "notification_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index(
        "notification_deliveries_recent",
        "notification_deliveries",
        [sa.text("create_time DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "notification_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        _time("position_time", nullable=False),
        sa.Column("position_id", sa.Text, nullable=False, server_default=""),
    )
    op.execute(
        "INSERT INTO notification_cursors (name, position_time) VALUES "
        + ", ".join(f"('{name}', clock_timestamp())" for name in CURSORS)
    )
    op.create_index("skipped_slots_by_record_time", "skipped_slots", ["record_time", "id"])
    op.execute("CREATE INDEX IF NOT EXISTS runs_finished ON runs (finish_time, id) WHERE finish_time IS NOT NULL")


def downgrade() -> None:
    op.drop_index("runs_finished", table_name="runs")
    op.drop_index("skipped_slots_by_record_time", table_name="skipped_slots")
    op.drop_table("notification_cursors")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_rules")
    op.drop_table("notification_channels")
