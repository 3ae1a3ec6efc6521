"""Schedules (issue 3) and reliable execution (issue 4): job policies, slot-unique runs,
retries, cancellation, idempotency keys, skipped slots and attempt logs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # jobs: schedule state lives on the job row; schedulers claim due rows with SKIP LOCKED.
    op.add_column("jobs", sa.Column("schedule", JSONB))
    op.add_column("jobs", sa.Column("retry_policy", JSONB))
    op.add_column("jobs", sa.Column("attempt_timeout_seconds", sa.Float))
    op.add_column("jobs", sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("next_fire_at", TZ))
    op.add_column("jobs", sa.Column("last_fire_at", TZ))
    op.add_column("jobs", sa.Column("last_fire_lag_seconds", sa.Float))
    op.add_column("jobs", sa.Column("misfired_slots", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("skipped_slots", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index(
        "jobs_due", "jobs", ["next_fire_at"], postgresql_where=sa.text("next_fire_at IS NOT NULL AND NOT paused")
    )

    # runs: snapshots of the policies, slot for scheduled runs, retry and cancel bookkeeping.
    op.add_column("runs", sa.Column("retry_policy", JSONB))
    op.add_column("runs", sa.Column("attempt_timeout_seconds", sa.Float))
    op.add_column("runs", sa.Column("slot_time", TZ))
    op.add_column("runs", sa.Column("retry_at", TZ))
    op.add_column("runs", sa.Column("idempotency_key", sa.Text))
    op.add_column("runs", sa.Column("retried_from", UUID))
    op.add_column("runs", sa.Column("cancel_time", TZ))
    # At most one run per schedule slot, whatever the number of schedulers.
    op.create_unique_constraint("runs_one_per_slot", "runs", ["job_id", "slot_time"])
    op.create_unique_constraint("runs_idempotency_key", "runs", ["job_id", "idempotency_key"])
    op.create_index("runs_retry_due", "runs", ["retry_at"], postgresql_where=sa.text("state = 'RETRY_WAIT'"))
    op.create_index(
        "runs_leased", "runs", ["lease_expires_at"], postgresql_where=sa.text("state IN ('RUNNING', 'CANCELLING')")
    )
    op.create_index(
        "runs_active_per_job",
        "runs",
        ["job_id"],
        postgresql_where=sa.text("state IN ('QUEUED', 'RUNNING', 'CANCELLING', 'RETRY_WAIT')"),
    )

    op.create_table(
        "skipped_slots",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("job_id", UUID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slot_time", TZ, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("record_time", TZ, nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("active_run_id", UUID),
        sa.UniqueConstraint("job_id", "slot_time", name="skipped_slots_once"),
        sa.CheckConstraint(
            "reason IN ('MISFIRED', 'OVERLAP', 'OUTSIDE_CATCH_UP_WINDOW')", name="skipped_slots_reason"
        ),
    )
    op.create_index("skipped_slots_recent", "skipped_slots", ["job_id", sa.text("slot_time DESC")])

    op.create_table(
        "run_logs",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("run_id", UUID, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("time", TZ, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("run_logs_by_run", "run_logs", ["run_id", "attempt", "id"])
    # Wake the scheduler holding a run's worker when the run is asked to stop (NOTIFY only speeds
    # it up: heartbeats answer with the same news).
    op.execute(
        "CREATE FUNCTION run_cancelling_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_notify('taskmesh_cancel', NEW.id::text || ':' || NEW.attempt || ':' || NEW.worker_id); "
        "RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER run_cancelling_notify AFTER UPDATE OF state ON runs FOR EACH ROW "
        "WHEN (NEW.state = 'CANCELLING' AND OLD.state <> 'CANCELLING') EXECUTE FUNCTION run_cancelling_notify()"
    )
    op.create_table(
        "attempt_log_usage",
        sa.Column("run_id", UUID, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("attempt_log_usage")
    op.execute("DROP TRIGGER run_cancelling_notify ON runs")
    op.execute("DROP FUNCTION run_cancelling_notify()")
    op.drop_table("run_logs")
    op.drop_table("skipped_slots")
    op.drop_index("runs_active_per_job", "runs")
    op.drop_index("runs_leased", "runs")
    op.drop_index("runs_retry_due", "runs")
    op.drop_constraint("runs_idempotency_key", "runs")
    op.drop_constraint("runs_one_per_slot", "runs")
    for column in (
        "cancel_time",
        "retried_from",
        "idempotency_key",
        "retry_at",
        "slot_time",
        "attempt_timeout_seconds",
        "retry_policy",
    ):
        op.drop_column("runs", column)
    op.drop_index("jobs_due", "jobs")
    for column in (
        "skipped_slots",
        "misfired_slots",
        "last_fire_lag_seconds",
        "last_fire_at",
        "next_fire_at",
        "paused",
        "attempt_timeout_seconds",
        "retry_policy",
        "schedule",
    ):
        op.drop_column("jobs", column)
