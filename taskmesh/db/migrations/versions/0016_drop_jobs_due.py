"""Drop jobs_due: no query reads it since firing claims jobs by due_at (migration 0003), and
every firing UPDATE of a job maintained it (an indexed column changes, so the update is never
HOT). Found while profiling 50,000 one-minute crons.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("jobs_due", table_name="jobs")


def downgrade() -> None:
    op.create_index(
        "jobs_due", "jobs", ["next_fire_at"], postgresql_where=sa.text("next_fire_at IS NOT NULL AND NOT paused")
    )
