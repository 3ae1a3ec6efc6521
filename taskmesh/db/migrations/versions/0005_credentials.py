"""Credentials that can be revoked, and login throttling.

Every user row carries a credential version drawn from one sequence: creating a user, changing
its role or its password gives it a new one, and tokens carry the version they were issued
for, so that a token stops working once its user is deleted, recreated or changed.
login_throttle counts failed logins per username and per client address, shared by every
api_server replica.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE credential_version_seq")
    op.add_column(
        "users",
        sa.Column(
            "credential_version",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text("nextval('credential_version_seq')"),
        ),
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True)),
    )
    op.create_index("login_throttle_window_start", "login_throttle", ["window_start"])


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_column("users", "credential_version")
    op.execute("DROP SEQUENCE credential_version_seq")
