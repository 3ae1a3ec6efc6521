"""The transactional outbox: work units written with their runs, published by relays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskmesh.db.pg import Database, Query, statement
from taskmesh.names import Route
from taskmesh.records import AttemptRef


# A relay leases rows while it publishes them; they are deleted once RabbitMQ confirmed them.
# A relay that dies meanwhile leaves its rows to be taken again when the lease ends: their
# work units may then be published twice, which fencing on the attempt makes harmless.
# Each row carries its run's route (pool, executor kind, Python task: route_of), written with
# it; the relay publishes it to that route's queue (pool, kind and task come from the run, NULL
# once it is gone).
def kind_of(alias: str) -> str:
    return f"(SELECT min(k) FROM jsonb_object_keys({alias}.executor) AS k)"


def task_of(alias: str) -> str:
    return f"{alias}.executor #>> '{{python,task}}'"


def route_of(alias: str) -> str:
    """The route text of the run `alias` (one per pool, kind and task; '' if it cannot be made):
    what a take groups outbox rows by, and what the relay leaves out while its queue is full."""
    return f"COALESCE({alias}.pool || ' ' || {kind_of(alias)} || ' ' || coalesce({task_of(alias)}, ''), '')"


KIND, TASK = kind_of("r"), task_of("r")


_ROUTED = f"""
    SELECT t.id, t.run_id::text AS run_id, t.attempt, t.route, r.pool, {TASK} AS task, {KIND} AS executor_kind
    FROM taken t LEFT JOIN runs r ON r.id = t.run_id
    ORDER BY t.priority DESC, t.id
"""
_LEASE = "lease_until = clock_timestamp() + make_interval(secs => :lease_seconds)"
_FREE = "(c.lease_until IS NULL OR c.lease_until < clock_timestamp())"
# Up to :limit rows, highest priority first (outbox_by_priority): when no route is held back.
# Both takes first delete the rows of the relay's last confirmed batch (:done), so that a relay
# publishing batch after batch runs one statement per batch; a relay that dies first leaves
# them to be published again after their lease, as if it had died before the confirms.
_DONE = "done AS (DELETE FROM outbox WHERE id = ANY(CAST(:done AS bigint[])))"
TAKE_BATCH = Query(
    f"""
    WITH {_DONE}, taken AS (
        UPDATE outbox AS o SET {_LEASE}
        WHERE o.id IN (
            SELECT c.id FROM outbox c WHERE {_FREE}
            ORDER BY c.priority DESC, c.id LIMIT :limit FOR UPDATE SKIP LOCKED
        ) RETURNING o.id, o.run_id, o.attempt, o.route, o.priority
    )"""
    + _ROUTED
)
# Up to :limit rows of each route but those in :excluded (whose queue is full, flow control),
# highest priority first within a route: the routes are found with a loose scan of
# outbox_by_route (one probe per route), and only the other routes' rows are read, so a take
# costs the same whatever backlog waits in the routes it leaves out. Order matters within a
# route (one queue, FIFO), not across routes (other queues, other consumers).
TAKE_OPEN_ROUTES = Query(
    f"""
    WITH RECURSIVE {_DONE}, routes AS (
        (SELECT route FROM outbox ORDER BY route LIMIT 1)
        UNION ALL
        SELECT (SELECT o.route FROM outbox o WHERE o.route > routes.route ORDER BY o.route LIMIT 1)
        FROM routes WHERE routes.route IS NOT NULL
    ), taken AS (
        UPDATE outbox AS o SET {_LEASE}
        WHERE o.id IN (
            SELECT c.id FROM routes CROSS JOIN LATERAL (
                SELECT c.id FROM outbox c WHERE c.route = routes.route AND {_FREE}
                ORDER BY c.route, c.priority DESC, c.id LIMIT :limit FOR UPDATE SKIP LOCKED
            ) c
            WHERE routes.route IS NOT NULL AND routes.route <> ALL(CAST(:excluded AS text[]))
        ) RETURNING o.id, o.run_id, o.attempt, o.route, o.priority
    )"""
    + _ROUTED
)
PENDING = Query(
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE lease_until IS NULL OR lease_until < clock_timestamp())"
)
# Admitted QUEUED runs whose work unit still waits in the outbox (no relay holds it): how many
# rows of the same route come before each (priority, then FIFO), for its waiting reason. Reads
# only for GetRun and GetJobStatus; each row's count is one range of outbox_by_route.
SELECT_HELD = Query(
    """
    SELECT o.run_id::text AS run_id,
        (SELECT count(*) FROM outbox a WHERE a.route = o.route
           AND (a.priority > o.priority OR (a.priority = o.priority AND a.id < o.id))) AS ahead
    FROM outbox o
    WHERE o.run_id = ANY(CAST(:run_ids AS uuid[])) AND (o.lease_until IS NULL OR o.lease_until < clock_timestamp())
    """
)
DELETE_PUBLISHED = Query("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")
# A relay whose publish failed hands its rows back at once, for the next relay (or itself,
# reconnected) to take, instead of leaving them until the lease ends.
RELEASE_BATCH = Query("UPDATE outbox SET lease_until = NULL WHERE id = ANY(CAST(:ids AS bigint[]))")
COUNT_BACKLOG = Query("SELECT count(*) FROM outbox")

NOTIFY_CHANNEL = "taskmesh_outbox"  # set by the outbox_notify trigger (migration 0001)
LEASE_SECONDS = 30.0


def take_limit(batch_size: int, max_in_flight: int) -> int:
    """The most rows one take leases per route: the batch size, or half the in-flight bound if
    smaller."""
    if max_in_flight <= 0:
        return batch_size
    return max(1, min(batch_size, max_in_flight // 2))


@dataclass(frozen=True)
class OutboxBatch:
    ids: list[int]
    units: list[AttemptRef]
    routes: list[Route]  # each unit's route (kind None: its run is gone)
    route_texts: list[str]  # each unit's route as the outbox stores it (route_of)


class OutboxRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def take(
        self,
        limit: int,
        lease_seconds: float = LEASE_SECONDS,
        excluded: Sequence[str] = (),
        done: Sequence[int] = (),
    ) -> OutboxBatch:
        """Lease up to `limit` pending work units to this relay, highest priority first; with
        routes `excluded` (route_of texts), up to `limit` of each other route. Rows `done` (ids
        of a batch RabbitMQ confirmed) are deleted in the same statement."""
        query = TAKE_BATCH
        params: dict[str, Any] = {"limit": limit, "lease_seconds": lease_seconds, "done": list(done)}
        if excluded:
            query, params = TAKE_OPEN_ROUTES, {**params, "excluded": list(excluded)}
        async with statement(self._engine) as conn:
            rows = (await conn.execute(query, params)).all_rows()
        return OutboxBatch(
            ids=[row.id for row in rows],
            units=[AttemptRef(row.run_id, row.attempt) for row in rows],
            routes=[Route(row.pool or "default", row.executor_kind, row.task) for row in rows],
            route_texts=[row.route for row in rows],
        )

    async def held(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Of these runs, those whose work unit waits in the outbox, with the rows of their route ahead."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_HELD, {"run_ids": list(run_ids)})).all_rows()
        return {row.run_id: int(row.ahead) for row in rows}

    async def published(self, batch: OutboxBatch) -> None:
        await self.delete(batch.ids)

    async def delete(self, ids: Sequence[int]) -> None:
        """Delete published rows (their messages are confirmed)."""
        async with statement(self._engine) as conn:
            await conn.execute(DELETE_PUBLISHED, {"ids": list(ids)})

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
