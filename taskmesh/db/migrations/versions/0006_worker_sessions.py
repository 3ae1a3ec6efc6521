"""Attempts belong to the worker stream that claimed them: runs.worker_session holds the hash of
that stream's session token, and every outcome, heartbeat and log statement is guarded by it.
Attempts running at upgrade carry none: only the reaper can end them (LOST, then retried).

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("worker_session", sa.Text))


def downgrade() -> None:
    op.drop_column("runs", "worker_session")
