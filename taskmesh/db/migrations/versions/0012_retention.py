"""Retention: a per-job policy, and the indexes purging and large histories need.

- jobs.retention: the job's taskmesh.v1.Retention in protobuf JSON (NULL: the settings).
- runs_by_state (state, queue_time DESC, id DESC): ListRuns filtered by state reads a page of
  the index (without it a state with few runs, QUEUED say, walks all of runs_recent), and the
  purge walks one state's finished runs oldest first.
- runs_retried_from (partial): "is this run some replay's retried_from" is an index probe.
- (the purge of skipped slots, oldest first, uses skipped_slots_by_record_time of 0011.)
- jobs_labels (GIN, jsonb_path_ops): ListJobs' label filter as containment (labels @> ...).

The indexes are built with plain CREATE INDEX, which holds writes to the table while it builds
(measured: see the README's Retention section). On a large history, create them beforehand with
CREATE INDEX CONCURRENTLY under the same names: IF NOT EXISTS then skips them. (CONCURRENTLY
cannot run here: it waits for every older snapshot, among them the other processes waiting for
the migration lock.)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INDEXES = {
    "runs_by_state": "ON runs (state, queue_time DESC, id DESC)",
    "runs_retried_from": "ON runs (retried_from) WHERE retried_from IS NOT NULL",
    "jobs_labels": "ON jobs USING gin (labels jsonb_path_ops)",
}


def upgrade() -> None:
    op.add_column("jobs", sa.Column("retention", JSONB(), nullable=True))
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_column("jobs", "retention")
