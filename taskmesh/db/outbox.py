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
# gone): the relay publishes it to that route's queue. Highest priority first (flow control).
KIND = "(SELECT min(k) FROM jsonb_object_keys(r.executor) AS k)"
TASK = "r.executor #>> '{python,task}'"
# One text per route (pool, kind, task): what the in-flight bound counts by.
ROUTE_KEY = f"(r.pool || ' ' || {KIND} || ' ' || coalesce({TASK}, ''))"
_ROUTED = f"""
    SELECT t.id, t.run_id::text AS run_id, t.attempt, r.pool, {TASK} AS task, {KIND} AS executor_kind
    FROM taken t LEFT JOIN runs r ON r.id = t.run_id
"""
TAKE_BATCH = Query(
    """
    WITH taken AS (
        UPDATE outbox AS o SET lease_until = clock_timestamp() + make_interval(secs => :lease_seconds)
        WHERE o.id IN (
            SELECT id FROM outbox WHERE lease_until IS NULL OR lease_until < clock_timestamp()
            ORDER BY priority DESC, id LIMIT :limit FOR UPDATE SKIP LOCKED
        ) RETURNING o.id, o.run_id, o.attempt
    )"""
    + _ROUTED
)
# Flow control: highest priority first, and only for routes (a queue each: pool, executor kind,
# Python task) with fewer than :max_in_flight work units out unclaimed (admitted QUEUED runs
# minus those still in the outbox), so that RabbitMQ's FIFO never holds much more than that ahead
# of a new high-priority run, and runs no worker takes (a route nobody serves) hold back only their
# own route. A route with room for fewer than :min_take units waits (the relay looks again
# shortly), so batches stay large. A take may overshoot the bound by one batch (and relays taking
# at once by one each): it bounds latency, it is no guarantee.
TAKE_BOUNDED_BATCH = Query(
    f"""
    WITH queued AS (
        SELECT {ROUTE_KEY} AS route, count(*) AS n FROM runs r
        WHERE r.state = 'QUEUED' AND NOT r.awaiting_admission GROUP BY 1
    ), pending AS (
        SELECT {ROUTE_KEY} AS route, count(*) AS n FROM outbox o JOIN runs r ON r.id = o.run_id GROUP BY 1
    ), full_routes AS (
        SELECT q.route FROM queued q LEFT JOIN pending p ON p.route = q.route
        WHERE q.route IS NOT NULL AND :max_in_flight - (q.n - COALESCE(p.n, 0)) < :min_take
    ), taken AS (
        UPDATE outbox AS o SET lease_until = clock_timestamp() + make_interval(secs => :lease_seconds)
        WHERE o.id IN (
            SELECT c.id FROM outbox c LEFT JOIN runs r ON r.id = c.run_id
            WHERE (c.lease_until IS NULL OR c.lease_until < clock_timestamp())
              AND (r.id IS NULL OR {ROUTE_KEY} NOT IN (SELECT route FROM full_routes))
            ORDER BY c.priority DESC, c.id LIMIT :limit FOR UPDATE OF c SKIP LOCKED
        ) RETURNING o.id, o.run_id, o.attempt
    )"""
    + _ROUTED
)
PENDING = Query(
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE lease_until IS NULL OR lease_until < clock_timestamp())"
)
DELETE_PUBLISHED = Query("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")
# A relay whose publish failed hands its rows back at once, for the next relay (or itself,
# reconnected) to take, instead of leaving them until the lease ends.
RELEASE_BATCH = Query("UPDATE outbox SET lease_until = NULL WHERE id = ANY(CAST(:ids AS bigint[]))")
COUNT_BACKLOG = Query("SELECT count(*) FROM outbox")

NOTIFY_CHANNEL = "taskmesh_outbox"  # set by the outbox_notify trigger (migration 0001)
LEASE_SECONDS = 30.0


def take_limit(batch_size: int, max_in_flight: int) -> int:
    """The most rows one take leases: the batch size, or half the in-flight bound if smaller."""
    if max_in_flight <= 0:
        return batch_size
    return max(1, min(batch_size, max_in_flight // 2))


@dataclass(frozen=True)
class OutboxBatch:
    ids: list[int]
    units: list[AttemptRef]
    routes: list[Route]  # each unit's route (kind None: its run is gone)


class OutboxRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def take(self, limit: int, lease_seconds: float = LEASE_SECONDS, max_in_flight: int = 0) -> OutboxBatch:
        """Lease up to `limit` pending work units to this relay, highest priority first; with
        max_in_flight > 0, only as many as keep the unclaimed work out in RabbitMQ under it."""
        query, params = TAKE_BATCH, {"limit": limit, "lease_seconds": lease_seconds}
        if max_in_flight > 0:
            min_take = max(1, min(limit, max_in_flight // 4))
            params.update(limit=take_limit(limit, max_in_flight), max_in_flight=max_in_flight)
            query, params = TAKE_BOUNDED_BATCH, {**params, "min_take": min_take}
        async with statement(self._engine) as conn:
            rows = (await conn.execute(query, params)).all_rows()
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

    async def pending(self) -> bool:
        """Whether rows wait that no relay holds (a short bounded batch: the bound holds them)."""
        async with statement(self._engine) as conn:
            return bool((await conn.execute(PENDING)).one_value())

    async def backlog(self) -> int:
        async with statement(self._engine) as conn:
            return int((await conn.execute(COUNT_BACKLOG)).one_value())
