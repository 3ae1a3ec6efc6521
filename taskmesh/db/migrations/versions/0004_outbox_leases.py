"""Outbox rows are leased to a relay while it publishes them, instead of being held in an open
transaction: the publish no longer waits for BEGIN, and no transaction stays open during it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("lease_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("outbox", "lease_until")
