"""Service accounts, API keys and the audit log.

A service account is a row of `users` of kind SERVICE: it shares the username namespace, the
role check and the credential version with people, has no password (so it can never log in)
and cannot be a worker. Its API keys live in `api_keys`, stored as the SHA-256 of the key (the
key itself is shown once); each key draws a credential version from the same sequence as the
users, so that the credential map's stamp (taskmesh.db.users) changes when a key is created,
and its key count when one is revoked (deleted) or its account deleted (cascade).

`audit_events` holds one row per mutating call, written by the statement that makes the change
(or, for a refused call, alone). It is append-only: rows leave only through the retention purge
(taskmesh.db.audit.purge_audit_events), oldest first by id. Indexes: actor and resource (each
with id, for paging newest first) and a BRIN index on time (rows arrive in time order), kept
few because single triggers insert a row each.

Revision ID: 0013
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("kind", sa.Text(), nullable=False, server_default="USER"))
    op.add_column("users", sa.Column("description", sa.Text(), nullable=False, server_default=""))
    op.add_column("users", sa.Column("created_by", sa.Text()))
    op.alter_column("users", "password_hash", nullable=True)
    op.create_check_constraint("users_kind_valid", "users", "kind IN ('USER', 'SERVICE')")
    # People have a password; service accounts have none and are never workers.
    op.create_check_constraint(
        "users_kind_credentials",
        "users",
        "(kind = 'USER' AND password_hash IS NOT NULL) "
        "OR (kind = 'SERVICE' AND password_hash IS NULL AND role IN ('ADMIN', 'OPERATOR', 'VIEWER'))",
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column(
            "service_account", sa.Text(), sa.ForeignKey("users.username", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_time", sa.DateTime(timezone=True)),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column(
            "credential_version",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text("nextval('credential_version_seq')"),
        ),
    )
    op.create_index("api_keys_service_account", "api_keys", ["service_account"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("api_key_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False, server_default=""),
        sa.Column("request_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("detail", JSONB()),
    )
    op.create_index("audit_events_actor", "audit_events", ["actor", "id"])
    op.create_index("audit_events_resource", "audit_events", ["resource", "id"])
    op.create_index("audit_events_time", "audit_events", ["time"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("api_keys")
    op.execute("DELETE FROM users WHERE kind = 'SERVICE'")
    op.drop_constraint("users_kind_credentials", "users")
    op.drop_constraint("users_kind_valid", "users")
    op.alter_column("users", "password_hash", nullable=False)
    op.drop_column("users", "created_by")
    op.drop_column("users", "description")
    op.drop_column("users", "kind")
