"""Attempts belong to the worker stream that claimed them: runs.worker_session holds the hash of
that stream's session token, and every outcome, heartbeat and log statement is guarded by it.
Attempts running at upgrade carry none: only the reaper can end them (LOST, then retried).
worker_sessions holds the live session of each worker_id, for every scheduler: a stream naming
a live worker's id without its session token is refused.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("worker_session", sa.Text))
    op.create_table(
        "worker_sessions",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("session_key", sa.Text, nullable=False),
        # Renewed by the stream's heartbeats; a session past it is dead (its scheduler vanished).
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_sessions")
    op.drop_column("runs", "worker_session")
