"""Parameters and outputs: a job's default parameters and parameter schema, a run's parameters
and output (all JSONB, NULL when unset: a run without parameters or output stores nothing).

Adding nullable columns without a default only changes the catalog (no table rewrite).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN parameters jsonb, ADD COLUMN parameter_schema jsonb")
    op.execute("ALTER TABLE runs ADD COLUMN parameters jsonb, ADD COLUMN output jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE runs DROP COLUMN parameters, DROP COLUMN output")
    op.execute("ALTER TABLE jobs DROP COLUMN parameters, DROP COLUMN parameter_schema")
