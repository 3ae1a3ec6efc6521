"""Initial schema: users, jobs, runs, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.Text, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("create_time", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('ADMIN', 'OPERATOR', 'VIEWER', 'WORKER')", name="users_role_valid"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("executor", JSONB, nullable=False),
        sa.Column("labels", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("create_time", TZ, nullable=False),
        sa.Column("update_time", TZ, nullable=False),
    )
    op.create_index("jobs_create_time_id", "jobs", ["create_time", "id"])
    op.create_table(
        "runs",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("job_id", UUID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("executor", JSONB, nullable=False),
        sa.Column("queue_time", TZ, nullable=False),
        sa.Column("start_time", TZ),
        sa.Column("finish_time", TZ),
        sa.Column("worker_id", sa.Text),
        sa.Column("lease_expires_at", TZ),
        sa.Column("result", JSONB),
        sa.Column("error", JSONB),
        sa.Column("attempts", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.CheckConstraint(
            "state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'RETRY_WAIT', 'CANCELLING', 'CANCELLED')",
            name="runs_state_valid",
        ),
        sa.CheckConstraint("attempt >= 1", name="runs_attempt_positive"),
    )
    op.create_index("runs_job_recent", "runs", ["job_id", sa.text("queue_time DESC"), sa.text("id DESC")])
    op.create_index("runs_recent", "runs", [sa.text("queue_time DESC"), sa.text("id DESC")])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("run_id", UUID, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("create_time", TZ, nullable=False, server_default=sa.func.clock_timestamp()),
    )
    # Wake outbox relays on every insert, whoever inserts (NOTIFY only speeds them up).
    op.execute(
        "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('taskmesh_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.execute("DROP FUNCTION outbox_notify()")
    op.drop_table("runs")
    op.drop_table("jobs")
    op.drop_table("users")
