"""The transactional outbox: work units written with their runs, published by relays."""

from __future__ import annotations

from dataclasses import dataclass

from taskmesh.db.pg import Database, Query, statement
from taskmesh.names import Route
from taskmesh.records import AttemptRef

# A relay leases rows while it publishes them; they are deleted once RabbitMQ confirmed them.
# A relay that dies meanwhile leaves its rows to be taken again when the lease ends: their
# work units may then be published twice, which fencing on the attempt makes harmless.
# Each row comes with its run's route (pool, executor kind, Python task; NULL once the run is
# gone): the relay publishes it to that route's queue.
TAKE_BATCH = Query(
    """
    WITH taken AS (
        UPDATE outbox AS o SET lease_until = clock_timestamp() + make_interval(secs => :lease_seconds)
        WHERE o.id IN (
            SELECT id FROM outbox WHERE lease_until IS NULL OR lease_until < clock_timestamp()
            ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
        ) RETURNING o.id, o.run_id, o.attempt
    )
    SELECT t.id, t.run_id::text AS run_id, t.attempt, r.pool, r.executor #>> '{python,task}' AS task,
        (SELECT min(k) FROM jsonb_object_keys(r.executor) AS k) AS executor_kind
    FROM taken t LEFT JOIN runs r ON r.id = t.run_id
    """
)
DELETE_PUBLISHED = Query("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")
# A relay whose publish failed hands its rows back at once, for the next relay (or itself,
# reconnected) to take, instead of leaving them until the lease ends.
RELEASE_BATCH = Query("UPDATE outbox SET lease_until = NULL WHERE id = ANY(CAST(:ids AS bigint[]))")
COUNT_BACKLOG = Query("SELECT count(*) FROM outbox")

NOTIFY_CHANNEL = "taskmesh_outbox"  # set by the outbox_notify trigger (migration 0001)
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class OutboxBatch:
    ids: list[int]
    units: list[AttemptRef]
    routes: list[Route]  # each unit's route (kind None: its run is gone)


class OutboxRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def take(self, limit: int, lease_seconds: float = LEASE_SECONDS) -> OutboxBatch:
        """Lease up to `limit` pending work units to this relay."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(TAKE_BATCH, {"limit": limit, "lease_seconds": lease_seconds})).all_rows()
        return OutboxBatch(
            ids=[row.id for row in rows],
            units=[AttemptRef(row.run_id, row.attempt) for row in rows],
            routes=[Route(row.pool or "default", row.executor_kind, row.task) for row in rows],
        )

    async def published(self, batch: OutboxBatch) -> None:
        async with statement(self._engine) as conn:
            await conn.execute(DELETE_PUBLISHED, {"ids": batch.ids})

    async def release(self, batch: OutboxBatch) -> None:
        """Hand back rows whose publish failed: any relay may take them again now."""
        async with statement(self._engine) as conn:
            await conn.execute(RELEASE_BATCH, {"ids": batch.ids})

    async def backlog(self) -> int:
        async with statement(self._engine) as conn:
            return int((await conn.execute(COUNT_BACKLOG)).one_value())
