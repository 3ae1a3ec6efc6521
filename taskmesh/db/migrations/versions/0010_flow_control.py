"""Flow control: priorities, concurrency limits per key, rate limits per key (README "Flow control").

jobs gain priority, concurrency and rate_limit (protobuf JSON). A run copies them when it is
created: priority orders the outbox (the relay publishes highest first, and only as much as the
workers can take soon), and a run of a job with a concurrency or rate limit is created
`awaiting_admission`, without a work unit: a scheduler's admission pass renders its keys,
admits it when its key has a free slot and a free token, and only then writes its outbox row.

Slots are not counted anywhere but in runs itself: a key's active runs are its admitted runs
in an active state (runs_concurrency_active), so every statement that ends a run frees its slot,
job deletion included. rate_limit_grants remembers each admission of a rate-limited run (kept
past the deletion of the run), so a deleted job cannot reset a shared key's window.
A trigger wakes admission passes (NOTIFY only speeds them up).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Frozen: the active states when this revision was written.
ACTIVE = "('QUEUED', 'RUNNING', 'RETRY_WAIT', 'CANCELLING')"
TERMINAL = "('SUCCEEDED', 'FAILED', 'CANCELLED')"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"))
    op.add_column("jobs", sa.Column("concurrency", JSONB))
    op.add_column("jobs", sa.Column("rate_limit", JSONB))
    op.create_check_constraint("jobs_priority_range", "jobs", "priority BETWEEN 0 AND 9")

    op.add_column("runs", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"))
    # {"concurrency": {...}, "rate_limit": {...}} of the job when the run was created; NULL: no limit.
    op.add_column("runs", sa.Column("flow", JSONB))
    op.add_column("runs", sa.Column("awaiting_admission", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("keys_rendered", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("concurrency_key", sa.Text))
    op.add_column("runs", sa.Column("concurrency_limit", sa.Integer))
    op.add_column("runs", sa.Column("on_limit", sa.Text))
    op.add_column("runs", sa.Column("rate_limit_key", sa.Text))
    op.add_column("runs", sa.Column("rate_limit", sa.Integer))
    op.add_column("runs", sa.Column("rate_period_seconds", sa.Float))
    op.add_column("runs", sa.Column("admit_time", sa.DateTime(timezone=True)))
    op.create_index(
        "runs_awaiting_admission",
        "runs",
        [sa.text("priority DESC"), "queue_time", "id"],
        postgresql_where=sa.text("awaiting_admission AND state = 'QUEUED'"),
    )
    op.create_index(
        "runs_concurrency_active",
        "runs",
        ["concurrency_key"],
        postgresql_where=sa.text(f"concurrency_key IS NOT NULL AND NOT awaiting_admission AND state IN {ACTIVE}"),
    )
    # Admitted runs not claimed yet: what the relay counts to bound the work out in RabbitMQ.
    op.create_index(
        "runs_dispatched",
        "runs",
        ["priority"],
        postgresql_where=sa.text("state = 'QUEUED' AND NOT awaiting_admission"),
    )

    op.add_column("outbox", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"))
    op.create_index("outbox_by_priority", "outbox", [sa.text("priority DESC"), "id"])

    op.create_table(
        "rate_limit_grants",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("grant_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", UUID, nullable=False),
    )
    op.create_index("rate_limit_grants_window", "rate_limit_grants", ["key", "grant_time"])

    op.execute(
        "CREATE FUNCTION runs_admission_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('taskmesh_admission', ''); RETURN NULL; END $$"
    )
    # A run to admit arrived, or a keyed run stopped being active (its slot is free).
    op.execute(
        "CREATE TRIGGER runs_admission_arrived AFTER INSERT OR UPDATE OF awaiting_admission ON runs "
        "FOR EACH ROW WHEN (NEW.awaiting_admission) EXECUTE FUNCTION runs_admission_notify()"
    )
    op.execute(
        "CREATE TRIGGER runs_admission_released AFTER UPDATE OF state ON runs FOR EACH ROW "
        f"WHEN (OLD.concurrency_key IS NOT NULL AND NEW.state IN {TERMINAL} AND OLD.state NOT IN {TERMINAL}) "
        "EXECUTE FUNCTION runs_admission_notify()"
    )
    op.execute(
        "CREATE TRIGGER runs_admission_deleted AFTER DELETE ON runs FOR EACH ROW "
        f"WHEN (OLD.concurrency_key IS NOT NULL AND OLD.state IN {ACTIVE}) "
        "EXECUTE FUNCTION runs_admission_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER runs_admission_deleted ON runs")
    op.execute("DROP TRIGGER runs_admission_released ON runs")
    op.execute("DROP TRIGGER runs_admission_arrived ON runs")
    op.execute("DROP FUNCTION runs_admission_notify()")
    op.drop_table("rate_limit_grants")
    op.drop_index("outbox_by_priority", table_name="outbox")
    op.drop_column("outbox", "priority")
    for index in ("runs_dispatched", "runs_concurrency_active", "runs_awaiting_admission"):
        op.drop_index(index, table_name="runs")
    for column in (
        "admit_time",
        "rate_period_seconds",
        "rate_limit",
        "rate_limit_key",
        "on_limit",
        "concurrency_limit",
        "concurrency_key",
        "keys_rendered",
        "awaiting_admission",
        "flow",
        "priority",
    ):
        op.drop_column("runs", column)
    op.drop_constraint("jobs_priority_range", "jobs")
    for column in ("rate_limit", "concurrency", "priority"):
        op.drop_column("jobs", column)
