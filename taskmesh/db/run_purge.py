"""Retention: the statements that delete finished history (runs, log lines, skipped slots).

taskmesh.db.runs writes runs; this module is the one place that deletes them. The rule is
taskmesh.retention_policy's, written here in SQL: a finished run goes once its finish time is
older than its job's retention for its state, unless it is its job's latest run, holds an
idempotency key inside the key window, or a replay names it as retried_from.

Every statement is one short transaction over a bounded window of rows, so that any number of
schedulers purge at once with no leader: each walks a window of at most `window` index entries
(oldest first, resuming after a cursor), locks the due rows with SKIP LOCKED (rows another
purger holds are its to delete) and deletes them. Nothing is rewritten; the space is reused
after (auto)vacuum. What a deleted run leaves behind goes in the same statement: its log lines
and log usage by the foreign keys' ON DELETE CASCADE, its work unit (if any is left in the
outbox; the run is finished, the unit could only be refused at claim) explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskmesh.db.pg import Database, Query, statement
from taskmesh.db.runs import FINISHED, IDEMPOTENCY_WINDOW
from taskmesh.states import RunState


def _job_seconds(field: str) -> str:
    """The job's retention for `field` in seconds, NULL for forever (0 in the override or the
    default :default_seconds); protobuf JSON writes a Duration as "<seconds>s"."""
    return (
        f"NULLIF(COALESCE(CAST(rtrim(j.retention ->> {field}, 's') AS float8), "
        "CAST(:default_seconds AS float8)), 0)"
    )


# One window of finished runs of one state, oldest first after the cursor (index runs_by_state).
PURGE_RUNS = Query(
    f"""
    WITH scan AS (
        SELECT r.id, r.queue_time FROM runs r
        WHERE r.state = :state AND r.queue_time < :scan_before
          AND (r.queue_time, r.id) > (CAST(:after_time AS timestamptz), CAST(:after_id AS uuid))
        ORDER BY r.state, r.queue_time, r.id LIMIT :window
    ), doomed AS (
        SELECT r.id FROM runs r JOIN scan ON scan.id = r.id JOIN jobs j ON j.id = r.job_id
        WHERE r.state = :state
          AND r.finish_time < clock_timestamp() - make_interval(secs => {_job_seconds("CAST(:field AS text)")})
          AND (r.idempotency_key IS NULL OR r.queue_time < clock_timestamp() - :key_window)
          AND EXISTS (SELECT 1 FROM runs newer WHERE newer.job_id = r.job_id
                      AND (newer.queue_time, newer.id) > (r.queue_time, r.id))
          AND NOT EXISTS (SELECT 1 FROM runs replay WHERE replay.retried_from = r.id)
        FOR UPDATE OF r SKIP LOCKED
    ), purged AS (
        DELETE FROM runs WHERE id IN (SELECT id FROM doomed) RETURNING id
    ), units AS (
        DELETE FROM outbox WHERE run_id IN (SELECT id FROM purged)
    )
    SELECT (SELECT count(*) FROM purged) AS purged, (SELECT count(*) FROM scan) AS scanned,
           last.queue_time AS last_time, last.id::text AS last_id
    FROM (SELECT 1) AS one
    LEFT JOIN (SELECT queue_time, id FROM scan ORDER BY queue_time DESC, id DESC LIMIT 1) AS last ON true
    """
)

# One window of log lines in the order they were stored, after the cursor:
# the due lines of finished runs that stay (those of purged runs went with them).
PURGE_LOGS = Query(
    f"""
    WITH scan AS (
        SELECT id, time FROM run_logs WHERE id > :after_id ORDER BY id LIMIT :window
    ), doomed AS (
        SELECT l.id FROM run_logs l JOIN scan ON scan.id = l.id
        JOIN runs r ON r.id = l.run_id JOIN jobs j ON j.id = r.job_id
        WHERE r.state IN {FINISHED}
          AND l.time < clock_timestamp() - make_interval(secs => {_job_seconds("'logs'")})
        FOR UPDATE OF l SKIP LOCKED
    ), purged AS (
        DELETE FROM run_logs WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT (SELECT count(*) FROM purged) AS purged, (SELECT count(*) FROM scan) AS scanned,
           (SELECT max(id) FROM scan) AS last_id, (SELECT min(time) FROM scan) AS oldest_time
    """
)

# Skipped slots recorded before the cutoff, oldest first (index skipped_slots_by_record_time).
PURGE_SKIPPED_SLOTS = Query(
    """
    WITH doomed AS (
        SELECT id FROM skipped_slots WHERE record_time < clock_timestamp() - make_interval(secs => :seconds)
        ORDER BY record_time LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    DELETE FROM skipped_slots WHERE id IN (SELECT id FROM doomed)
    """
)

# The shortest positive per-job override of each field (a zero keeps forever): with the
# default, it bounds how far towards the present a sweep must look.
SHORTEST_OVERRIDES = Query(
    """
    SELECT min(CAST(rtrim(retention ->> 'succeeded', 's') AS float8)) FILTER (WHERE retention ? 'succeeded'
               AND CAST(rtrim(retention ->> 'succeeded', 's') AS float8) > 0) AS succeeded,
           min(CAST(rtrim(retention ->> 'failed', 's') AS float8)) FILTER (WHERE retention ? 'failed'
               AND CAST(rtrim(retention ->> 'failed', 's') AS float8) > 0) AS failed,
           min(CAST(rtrim(retention ->> 'cancelled', 's') AS float8)) FILTER (WHERE retention ? 'cancelled'
               AND CAST(rtrim(retention ->> 'cancelled', 's') AS float8) > 0) AS cancelled,
           min(CAST(rtrim(retention ->> 'logs', 's') AS float8)) FILTER (WHERE retention ? 'logs'
               AND CAST(rtrim(retention ->> 'logs', 's') AS float8) > 0) AS logs
    FROM jobs WHERE retention IS NOT NULL
    """
)

EPOCH = "-infinity"
NIL_ID = "00000000-0000-0000-0000-000000000000"
FIRST_LOG_CURSOR = -(2**63)  # before every run_logs id


@dataclass(frozen=True)
class RunCursor:
    """Where a sweep of one state resumes: after this (queue_time, id)."""

    after_time: datetime | str = EPOCH
    after_id: str = NIL_ID


@dataclass(frozen=True)
class Window:
    """What one purge statement did: rows deleted, rows looked at, and where the next resumes
    (None: the window was the last one of the sweep)."""

    purged: int
    scanned: int
    next_cursor: Any


class RunPurgeRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def purge_runs(
        self,
        state: RunState,
        field: str,
        default_seconds: float,
        scan_before: datetime,
        cursor: RunCursor,
        window: int,
    ) -> Window:
        params = {
            "state": state.value,
            "field": field,
            "default_seconds": default_seconds,
            "scan_before": scan_before,
            "after_time": cursor.after_time,
            "after_id": cursor.after_id,
            "window": window,
            "key_window": IDEMPOTENCY_WINDOW,
        }
        async with statement(self._engine) as conn:
            row = (await conn.execute(PURGE_RUNS, params)).first_row()
        assert row is not None
        more = row.scanned >= window and row.last_id is not None
        return Window(int(row.purged), int(row.scanned), RunCursor(row.last_time, row.last_id) if more else None)

    async def purge_logs(
        self, default_seconds: float, scan_before: datetime, after_id: int, window: int
    ) -> Window:
        params = {"default_seconds": default_seconds, "after_id": after_id, "window": window}
        async with statement(self._engine) as conn:
            row = (await conn.execute(PURGE_LOGS, params)).first_row()
        assert row is not None
        # Ids grow with time (lines are stored as they arrive), so a window all younger than the
        # bound means the rest is too; a line out of order (a worker's clock) waits a sweep.
        more = row.scanned >= window and row.oldest_time is not None and row.oldest_time < scan_before
        return Window(int(row.purged), int(row.scanned), int(row.last_id) if more else None)

    async def purge_skipped_slots(self, seconds: float, limit: int) -> int:
        async with statement(self._engine) as conn:
            result = await conn.execute(PURGE_SKIPPED_SLOTS, {"seconds": seconds, "limit": limit})
        return int(result.rowcount)

    async def shortest_overrides(self) -> dict[str, timedelta | None]:
        """Per field, the shortest positive retention any job sets (None: no job sets one)."""
        async with statement(self._engine) as conn:
            row = (await conn.execute(SHORTEST_OVERRIDES)).first_row()
        assert row is not None
        return {
            field: None if getattr(row, field) is None else timedelta(seconds=float(getattr(row, field)))
            for field in ("succeeded", "failed", "cancelled", "logs")
        }
