"""Flow control made cheap: the relay's in-flight bound, one admission write per run.

Until now every bounded take counted, per route, every admitted QUEUED run and every outbox row
(computing each run's route from its executor), so its cost grew with the backlog (~35 ms a take
behind 10,000 runs). Now the relay reads how many work units wait in each queue from RabbitMQ
(the number it means to bound), and an outbox row carries its route, written with it, so that a
take that leaves out the routes whose queue is full reads the other routes' highest-priority
rows from one index (outbox_by_route) without looking at the held-back rows.

The admission pass writes a new run's rendered keys in the statement that admits it (one UPDATE
per run instead of two, taskmesh.db.runs ADMIT_RUNS), setting awaiting_admission on the runs
that still wait: runs_admission_arrived, which fired on every UPDATE OF awaiting_admission that
left it true, becomes one trigger on INSERT and one on an UPDATE that sets it (a retry waiting
for its rate limit again), so that a pass does not wake the next for the runs it left waiting.

runs_dispatched (the index the count read) goes. Rows written before this revision get their
route from their run ('' once the run is gone: the relay publishes those to the default pool's
main queue, where the claim drops them).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Frozen: the route text of taskmesh.db.outbox when this revision was written.
ROUTE = (
    "COALESCE(r.pool || ' ' || (SELECT min(k) FROM jsonb_object_keys(r.executor) AS k) || ' ' "
    "|| coalesce(r.executor #>> '{python,task}', ''), '')"
)


def upgrade() -> None:
    op.add_column("outbox", sa.Column("route", sa.Text, nullable=False, server_default=""))
    op.execute(f"UPDATE outbox o SET route = {ROUTE} FROM runs r WHERE r.id = o.run_id")
    op.create_index("outbox_by_route", "outbox", ["route", sa.text("priority DESC"), "id"])
    op.drop_index("runs_dispatched", table_name="runs")
    op.execute("DROP TRIGGER runs_admission_arrived ON runs")
    op.execute(
        "CREATE TRIGGER runs_admission_arrived AFTER INSERT ON runs "
        "FOR EACH ROW WHEN (NEW.awaiting_admission) EXECUTE FUNCTION runs_admission_notify()"
    )
    op.execute(
        "CREATE TRIGGER runs_admission_requeued AFTER UPDATE OF awaiting_admission ON runs "
        "FOR EACH ROW WHEN (NEW.awaiting_admission AND NOT OLD.awaiting_admission) "
        "EXECUTE FUNCTION runs_admission_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER runs_admission_requeued ON runs")
    op.execute("DROP TRIGGER runs_admission_arrived ON runs")
    op.execute(
        "CREATE TRIGGER runs_admission_arrived AFTER INSERT OR UPDATE OF awaiting_admission ON runs "
        "FOR EACH ROW WHEN (NEW.awaiting_admission) EXECUTE FUNCTION runs_admission_notify()"
    )
    op.create_index(
        "runs_dispatched",
        "runs",
        ["priority"],
        postgresql_where=sa.text("state = 'QUEUED' AND NOT awaiting_admission"),
    )
    op.drop_index("outbox_by_route", table_name="outbox")
    op.drop_column("outbox", "route")
