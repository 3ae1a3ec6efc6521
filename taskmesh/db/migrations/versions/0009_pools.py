"""Worker pools and start deadlines: jobs and runs name their pool ('default' unless set; a run
keeps the pool it was queued in), a job may bound how long its runs wait to start
(runs.start_deadline_at, swept by the scheduler while QUEUED), and worker_sessions says what each
live worker serves (pools, executors, Python tasks, slots, busy slots as of its last heartbeat).

Columns with a constant default are added without rewriting the tables (PostgreSQL 11+).

Revision ID: 0009
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0012"
branch_labels = None
depends_on = None

TEXTS = postgresql.ARRAY(sa.Text)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("pool", sa.Text, nullable=False, server_default="default"))
    op.add_column("jobs", sa.Column("start_deadline_seconds", sa.Float))
    op.add_column("runs", sa.Column("pool", sa.Text, nullable=False, server_default="default"))
    op.add_column("runs", sa.Column("start_deadline_at", sa.DateTime(timezone=True)))
    op.create_index(
        "runs_start_deadline",
        "runs",
        ["start_deadline_at"],
        postgresql_where=sa.text("state = 'QUEUED' AND start_deadline_at IS NOT NULL"),
    )
    op.add_column("worker_sessions", sa.Column("pools", TEXTS, nullable=False, server_default="{default}"))
    op.add_column("worker_sessions", sa.Column("executors", TEXTS, nullable=False, server_default="{}"))
    op.add_column("worker_sessions", sa.Column("tasks", TEXTS, nullable=False, server_default="{}"))
    op.add_column("worker_sessions", sa.Column("slots", sa.Integer, nullable=False, server_default="0"))
    op.add_column("worker_sessions", sa.Column("busy_slots", sa.Integer, nullable=False, server_default="0"))
    op.add_column(
        "worker_sessions",
        sa.Column("connect_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for column in ("connect_time", "busy_slots", "slots", "tasks", "executors", "pools"):
        op.drop_column("worker_sessions", column)
    op.drop_index("runs_start_deadline", table_name="runs")
    op.drop_column("runs", "start_deadline_at")
    op.drop_column("runs", "pool")
    op.drop_column("jobs", "start_deadline_seconds")
    op.drop_column("jobs", "pool")
