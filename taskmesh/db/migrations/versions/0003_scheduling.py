"""Scheduling (issue 3): when each job's next slot is due (slot plus jitter), when it was last
resumed, and a NOTIFY that wakes schedulers when a schedule changes or a job resumes.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # next_fire_at is the nominal slot; due_at adds its jitter: schedulers claim on due_at.
    op.add_column("jobs", sa.Column("due_at", TZ))
    op.add_column("jobs", sa.Column("resumed_at", TZ))
    op.create_index(
        "jobs_fire_due", "jobs", ["due_at"], postgresql_where=sa.text("due_at IS NOT NULL AND NOT paused")
    )
    # Wake schedulers when a job becomes due earlier than they may think (NOTIFY only speeds
    # them up; they poll anyway). Firing moves due_at later and notifies nobody.
    op.execute(
        "CREATE FUNCTION jobs_schedule_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('taskmesh_schedules', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER jobs_schedule_created AFTER INSERT ON jobs FOR EACH ROW "
        "WHEN (NEW.due_at IS NOT NULL AND NOT NEW.paused) EXECUTE FUNCTION jobs_schedule_notify()"
    )
    op.execute(
        "CREATE TRIGGER jobs_schedule_changed AFTER UPDATE OF due_at, paused ON jobs FOR EACH ROW "
        "WHEN (NEW.due_at IS NOT NULL AND NOT NEW.paused "
        "AND (OLD.paused OR OLD.due_at IS NULL OR NEW.due_at < OLD.due_at)) "
        "EXECUTE FUNCTION jobs_schedule_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_schedule_changed ON jobs")
    op.execute("DROP TRIGGER jobs_schedule_created ON jobs")
    op.execute("DROP FUNCTION jobs_schedule_notify()")
    op.drop_index("jobs_fire_due", "jobs")
    op.drop_column("jobs", "resumed_at")
    op.drop_column("jobs", "due_at")
