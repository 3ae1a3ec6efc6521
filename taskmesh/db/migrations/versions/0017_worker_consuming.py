"""worker_sessions.consuming: whether a worker's RabbitMQ consumer takes work. A worker whose
broker connection is down keeps its WorkerService stream and heartbeats; until now it counted
as serving its pools, so a run that no consuming worker could take showed no waiting reason.

A constant default: no table rewrite; sessions written by older workers count as consuming.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "worker_sessions", sa.Column("consuming", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("worker_sessions", "consuming")
