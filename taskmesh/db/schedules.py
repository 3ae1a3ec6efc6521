"""Firing schedules: claim due jobs, apply the decisions, list skipped slots.

Any number of schedulers fire at once. Each claims due jobs with FOR NO KEY UPDATE SKIP LOCKED
and, in that same transaction, creates their runs, records skipped slots, cancels runs (REPLACE)
and moves the jobs to their next slot. The run writes are taskmesh.db.runs' (the lifecycle module):
this module adds the schedule's bookkeeping to its statement. A job row is thus fired by one
scheduler at a time, and a crash rolls the whole decision back. UNIQUE (job_id, slot_time) on
runs is the last line of defence: a slot that already has a run is counted as a conflict,
never fired twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from taskmesh.db import runs
from taskmesh.db.paging import Keyset, page_query
from taskmesh.db.pg import Connection, Database, Query, statement, transaction
from taskmesh.records import DueJob, FiredBatch, FireDecision, Page, RunRecord, SkippedSlotRecord
from taskmesh.states import SkipReason

# Array elements written without quotes (see _array).
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")

NOTIFY_CHANNEL = "taskmesh_schedules"  # set by the jobs_schedule_* triggers (migration 0003)

# Active runs are read only where the overlap policy needs them (runs_active_per_job index).
# NO KEY UPDATE is the lock the firing UPDATE takes anyway (it changes no key): unlike FOR
# UPDATE it does not block a TriggerJob inserting a run of the same job (its foreign key check
# takes FOR KEY SHARE) while the batch fires; schedulers still exclude each other.
CLAIM_DUE = Query(
    f"""
    SELECT j.id::text AS id, j.schedule, j.create_time, j.next_fire_at, j.resumed_at, now() AS now,
           CASE WHEN j.schedule ->> 'overlapPolicy' IN ('FORBID', 'REPLACE') THEN ARRAY(
               SELECT r.id::text FROM runs r WHERE r.job_id = j.id AND r.state IN {runs.ACTIVE}
               ORDER BY r.queue_time, r.id
           ) ELSE ARRAY[]::text[] END AS active_run_ids
    FROM jobs j
    WHERE j.due_at <= now() AND j.due_at IS NOT NULL AND NOT j.paused
    ORDER BY j.due_at
    LIMIT :limit
    FOR NO KEY UPDATE OF j SKIP LOCKED
    """
)

# One statement for the whole batch: the runs (with their work units), skipped slots, the jobs' next slot.
APPLY_DECISIONS = runs.scheduled_runs_statement(
    """skipped AS (
        INSERT INTO skipped_slots (job_id, slot_time, reason, active_run_id)
        SELECT * FROM unnest(CAST(:skip_job_ids AS uuid[]), CAST(:skip_slots AS timestamptz[]),
                             CAST(:skip_reasons AS text[]), CAST(:skip_active_ids AS uuid[]))
        ON CONFLICT (job_id, slot_time) DO NOTHING
    )""",
    """latest AS (
        SELECT DISTINCT ON (job_id) job_id, extract(epoch FROM queue_time - slot_time) AS lag_seconds
        FROM queued ORDER BY job_id, slot_time DESC
    )""",
    """advanced AS (
        UPDATE jobs SET next_fire_at = u.next_fire_at, due_at = u.due_at,
            last_fire_at = COALESCE(u.last_fire_at, jobs.last_fire_at),
            last_fire_lag_seconds = COALESCE(latest.lag_seconds, jobs.last_fire_lag_seconds),
            misfired_slots = jobs.misfired_slots + u.misfired,
            skipped_slots = jobs.skipped_slots + u.skipped
        FROM unnest(CAST(:job_ids AS uuid[]), CAST(:next_fire_ats AS timestamptz[]),
                    CAST(:due_ats AS timestamptz[]), CAST(:last_fire_ats AS timestamptz[]),
                    CAST(:misfired AS bigint[]), CAST(:skipped AS bigint[]))
             AS u(job_id, next_fire_at, due_at, last_fire_at, misfired, skipped)
             LEFT JOIN latest ON latest.job_id = u.job_id
        WHERE jobs.id = u.job_id
    )""",
)

# Claimed ahead of the earliest due time (:until), so that decide() and the claim round trip are
# done before the slot and only the APPLY statement is left for it. Only jobs whose overlap
# policy reads no active runs: FORBID and REPLACE must see the runs active at the slot itself,
# and are fired by CLAIM_DUE then. The rows stay locked until the prepared batch commits.
CLAIM_AHEAD = Query(
    """
    SELECT j.id::text AS id, j.schedule, j.create_time, j.next_fire_at, j.resumed_at,
           CAST(:until AS timestamptz) AS now, ARRAY[]::text[] AS active_run_ids,
           extract(epoch FROM CAST(:until AS timestamptz) - clock_timestamp()) AS wait_seconds
    FROM jobs j
    WHERE j.due_at <= CAST(:until AS timestamptz) AND j.due_at IS NOT NULL AND NOT j.paused
      AND COALESCE(j.schedule ->> 'overlapPolicy', '') NOT IN ('FORBID', 'REPLACE')
    ORDER BY j.due_at
    LIMIT :limit
    FOR NO KEY UPDATE OF j SKIP LOCKED
    """
)

PREPARED_IDLE_TIMEOUT = Query("SET LOCAL idle_in_transaction_session_timeout = '2s'")

NEXT_DUE = Query(
    """
    SELECT min(due_at) AS due_at, extract(epoch FROM min(due_at) - clock_timestamp()) AS seconds FROM jobs
    WHERE due_at IS NOT NULL AND NOT paused
    """
)

SKIPPED_COLUMNS = "job_id::text AS job_id, slot_time, reason, record_time, active_run_id::text AS active_run_id"

Decide = Callable[[Sequence[DueJob]], Sequence[FireDecision]]


class ScheduleRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def fire_due(self, limit: int, decide: Decide) -> tuple[int, FiredBatch]:
        """Claim up to `limit` due jobs, apply decide(jobs) to them and commit; returns how
        many jobs were claimed and what firing did."""
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(CLAIM_DUE, {"limit": limit})).all_rows()
            if not rows:
                return 0, FiredBatch([], [], 0)
            decisions = decide([_due_job(row) for row in rows])
            fired = await _apply(conn, decisions)
        return len(rows), fired

    async def fire_ahead(self, limit: int, until: datetime, decide: Decide) -> tuple[int, FiredBatch]:
        """Claim up to `limit` jobs due by `until` (still ahead), decide them as of `until`,
        wait until `until` by the database's clock and only then apply and commit: the runs'
        queue_time is never before their slot."""
        async with transaction(self._engine) as conn:
            # A scheduler frozen while it holds the rows must not keep the others from firing
            # them: PostgreSQL ends the transaction once it has sat idle this long.
            await conn.execute(PREPARED_IDLE_TIMEOUT)
            rows = (await conn.execute(CLAIM_AHEAD, {"limit": limit, "until": until})).all_rows()
            claimed_at = asyncio.get_running_loop().time()
            if not rows:
                return 0, FiredBatch([], [], 0)
            decisions = decide([_due_job(row) for row in rows])
            remaining = claimed_at + float(rows[0].wait_seconds) - asyncio.get_running_loop().time()
            if remaining > 0:
                await asyncio.sleep(remaining)
            fired = await _apply(conn, decisions)
        return len(rows), fired

    async def next_due(self) -> tuple[datetime, float] | None:
        """The earliest due time and the seconds until it (negative when overdue); None when
        no job is due."""
        async with statement(self._engine) as conn:
            row = (await conn.execute(NEXT_DUE)).one_row()
        return None if row.due_at is None else (row.due_at, float(row.seconds))

    async def list_skipped(self, job_id: str, page: Page | None, limit: int) -> list[SkippedSlotRecord]:
        """A job's skipped slots, newest first; a page continues before page.after_time."""
        select = f"SELECT {SKIPPED_COLUMNS} FROM skipped_slots"
        order = Keyset("slot_time", descending=True)  # a job's slot times are unique
        query, values = page_query(select, ["job_id = :job_id"], {"job_id": job_id}, order, page, limit)
        async with statement(self._engine) as conn:
            rows = (await conn.execute(query, values)).all_rows()
        return [
            SkippedSlotRecord(
                job_id=row.job_id,
                slot_time=row.slot_time,
                reason=SkipReason(row.reason),
                record_time=row.record_time,
                active_run_id=row.active_run_id,
            )
            for row in rows
        ]


async def _apply(conn: Connection, decisions: Sequence[FireDecision]) -> FiredBatch:
    params = _apply_params(decisions)
    created = await runs.create_scheduled_runs(conn, APPLY_DECISIONS, params)
    cancel_ids = [run_id for d in decisions for run_id in d.cancel_run_ids]
    cancelled: list[RunRecord] = []
    if cancel_ids:
        # REPLACE: the guarded cancel transition, in the same transaction as the new run.
        cancelled = await runs.cancel_runs(conn, cancel_ids)
    conflicts = sum(len(d.fired) for d in decisions) - len(created)
    return FiredBatch(created=created, cancelled=cancelled, conflicts=conflicts)


def _apply_params(decisions: Sequence[FireDecision]) -> dict[str, str]:
    fired = [(d.job_id, f) for d in decisions for f in d.fired]
    skipped = [(d.job_id, s) for d in decisions for s in d.skipped]
    return {
        "run_ids": _array([f.run_id for _, f in fired]),
        "fire_job_ids": _array([job_id for job_id, _ in fired]),
        "slot_times": _array([f.slot_time for _, f in fired]),
        "skip_job_ids": _array([job_id for job_id, _ in skipped]),
        "skip_slots": _array([s.slot_time for _, s in skipped]),
        "skip_reasons": _array([s.reason.value for _, s in skipped]),
        "skip_active_ids": _array([s.active_run_id for _, s in skipped]),
        "job_ids": _array([d.job_id for d in decisions]),
        "next_fire_ats": _array([d.next_slot for d in decisions]),
        "due_ats": _array([d.next_due for d in decisions]),
        "last_fire_ats": _array([_last_fired(d) for d in decisions]),
        "misfired": _array([d.misfired for d in decisions]),
        "skipped": _array([len(d.skipped) for d in decisions]),
    }


def _array(values: Sequence[str | datetime | int | None]) -> str:
    """A PostgreSQL array literal (cast by the statement) of uuids, timestamps, integers or
    enum names, none of which needs quoting. psycopg dumps a list element by element (a
    regular expression per text, a conversion per timestamp), which cost more than deciding the
    batch; a batch's slot times are mostly the same few, converted once."""
    text: dict[str | datetime | int | None, str] = {}
    parts = []
    for value in values:
        part = text.get(value)
        if part is None:
            part = text[value] = _element(value)
        parts.append(part)
    return "{" + ",".join(parts) + "}"


def _element(value: str | datetime | int | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if _PLAIN.fullmatch(text) is None:
        raise ValueError(f"{text!r} needs quoting in an array literal")
    return text


def _last_fired(decision: FireDecision) -> datetime | None:
    return max((f.slot_time for f in decision.fired), default=None)


def _due_job(row: Any) -> DueJob:
    return DueJob(
        id=row.id,
        schedule=row.schedule,
        create_time=row.create_time,
        next_fire_at=row.next_fire_at,
        resumed_at=row.resumed_at,
        active_run_ids=tuple(row.active_run_ids),
        now=row.now,
    )
