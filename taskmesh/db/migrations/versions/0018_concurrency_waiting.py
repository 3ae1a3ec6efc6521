"""runs_concurrency_waiting: the runs that wait for a slot of their concurrency key, by key. A
manual trigger admits its run at once when the key has room and nobody waits for it
(taskmesh.db.runs CREATE_RUNS); this index answers "does anyone wait for this key" with one
probe instead of a scan of every waiting run.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "runs_concurrency_waiting",
        "runs",
        ["concurrency_key"],
        postgresql_where=sa.text("concurrency_key IS NOT NULL AND awaiting_admission AND state = 'QUEUED'"),
    )


def downgrade() -> None:
    op.drop_index("runs_concurrency_waiting", table_name="runs")
