"""Runs: creation and every state transition, each one guarded statement.

A transition names the state(s) it expects and the attempt (the fencing token). A stale or
duplicate request matches no row and changes nothing; callers learn it from the missing row.
Statements take batches (arrays bound with unnest) so that a burst costs one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskmesh.db.engine import statement
from taskmesh.errors import NotFound
from taskmesh.records import (
    ClaimedAttempt,
    ClaimRequest,
    Condition,
    OutcomeReport,
    Page,
    RunRecord,
)
from taskmesh.states import RunState, Trigger

# The lifecycle edges each guarded statement below implements (from state, to state).
# tests/unit/test_states.py checks them against taskmesh.states.ALLOWED_TRANSITIONS.
Q, R, C, CI = RunState.QUEUED, RunState.RUNNING, RunState.CANCELLED, RunState.CANCELLING
TRANSITIONS: dict[str, frozenset[tuple[RunState, RunState]]] = {
    "claim": frozenset({(Q, R)}),
    "cancel": frozenset({(Q, C), (RunState.RETRY_WAIT, C), (R, CI)}),
    "record_outcomes": frozenset(
        (source, target)
        for source in (R, CI)
        for target in (RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT, C)
    ),
}

# Every query that returns runs selects these, with jobs joined as j for the name.
RUN_COLUMNS = """
    r.id::text AS id, r.job_id::text AS job_id, j.name AS job_name, r.state, r.attempt, r.trigger,
    r.version, r.queue_time, r.start_time, r.finish_time, r.worker_id, r.result, r.error, r.attempts,
    r.slot_time
"""

CREATE_RUNS = text(
    f"""
    WITH request AS (
        SELECT * FROM unnest(CAST(:run_ids AS uuid[]), CAST(:job_ids AS uuid[])) AS t(run_id, job_id)
    ), created AS (
        INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time)
        SELECT request.run_id, jobs.id, 'QUEUED', 1, :trigger, jobs.executor, clock_timestamp()
        FROM request JOIN jobs ON jobs.id = request.job_id
        RETURNING *
    ), dispatched AS (
        INSERT INTO outbox (run_id, attempt) SELECT id, attempt FROM created
    )
    SELECT {RUN_COLUMNS} FROM created r JOIN jobs j ON j.id = r.job_id
    """
)

# QUEUED -> RUNNING
CLAIM_ATTEMPTS = text(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = 'RUNNING', worker_id = claim.worker_id, start_time = now_ts.t,
        lease_expires_at = now_ts.t + make_interval(secs => :lease_seconds), version = r.version + 1
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
                CAST(:positions AS int[])) AS claim(run_id, attempt, worker_id, position),
         jobs j, now_ts
    WHERE r.id = claim.run_id AND r.attempt = claim.attempt AND r.state = 'QUEUED' AND j.id = r.job_id
    RETURNING claim.position, r.executor, {RUN_COLUMNS}
    """
)

# RUNNING or CANCELLING -> the state the outcome leads to; the attempt joins the history.
RECORD_OUTCOMES = text(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = report.new_state, finish_time = now_ts.t, result = report.result, error = report.error,
        lease_expires_at = NULL, version = r.version + 1,
        attempts = r.attempts || jsonb_build_array(jsonb_build_object(
            'attempt', r.attempt, 'worker_id', r.worker_id, 'start_time', r.start_time,
            'finish_time', now_ts.t, 'status', report.attempt_status,
            'result', report.result, 'error', report.error))
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
                CAST(:new_states AS text[]), CAST(:attempt_statuses AS text[]),
                CAST(:results AS jsonb[]), CAST(:errors AS jsonb[]), CAST(:positions AS int[]))
         AS report(run_id, attempt, worker_id, new_state, attempt_status, result, error, position),
         jobs j, now_ts
    WHERE r.id = report.run_id AND r.attempt = report.attempt AND r.worker_id = report.worker_id
      AND r.state IN ('RUNNING', 'CANCELLING') AND j.id = r.job_id
    RETURNING report.position, {RUN_COLUMNS}
    """
)

# QUEUED or RETRY_WAIT -> CANCELLED at once (a work unit still queued is dropped at claim);
# RUNNING -> CANCELLING: the worker holding the attempt is told to stop it and reports CANCELLED.
# Runs in other states are left alone (and not returned).
CANCEL_RUNS = text(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = CASE WHEN r.state = 'RUNNING' THEN 'CANCELLING' ELSE 'CANCELLED' END,
        finish_time = CASE WHEN r.state = 'RUNNING' THEN r.finish_time ELSE now_ts.t END,
        cancel_time = now_ts.t, retry_at = NULL, version = r.version + 1
    FROM jobs j, now_ts
    WHERE r.id = ANY(CAST(:run_ids AS uuid[])) AND r.state IN ('QUEUED', 'RETRY_WAIT', 'RUNNING')
      AND j.id = r.job_id
    RETURNING {RUN_COLUMNS}
    """
)

SELECT_RUN = text(f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = :id")

SELECT_LATEST_RUN = text(
    f"""
    SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id
    WHERE r.job_id = :job_id ORDER BY r.queue_time DESC, r.id DESC LIMIT 1
    """
)


class RunRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, run_ids: Sequence[str], job_ids: Sequence[str], trigger: Trigger) -> list[RunRecord]:
        """Insert QUEUED runs and their outbox rows in one transaction; unknown jobs are skipped."""
        params = {"run_ids": list(run_ids), "job_ids": list(job_ids), "trigger": trigger.value}
        async with statement(self._engine) as conn:
            rows = (await conn.execute(CREATE_RUNS, params)).all()
        return [_run(row) for row in rows]

    async def claim(self, requests: Sequence[ClaimRequest], lease_seconds: float) -> list[ClaimedAttempt | None]:
        """QUEUED -> RUNNING for each request; None where the guard failed (stale or duplicate)."""
        params = {
            "run_ids": [r.ref.run_id for r in requests],
            "attempts": [r.ref.attempt for r in requests],
            "worker_ids": [r.worker_id for r in requests],
            "positions": list(range(len(requests))),
            "lease_seconds": lease_seconds,
        }
        async with statement(self._engine) as conn:
            rows = (await conn.execute(CLAIM_ATTEMPTS, params)).all()
        granted: list[ClaimedAttempt | None] = [None] * len(requests)
        for row in rows:
            granted[row.position] = ClaimedAttempt(run=_run(row), executor=row.executor)
        return granted

    async def record_outcomes(self, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
        """Close each reported attempt; None where the report lost the fencing race."""
        params = {
            "run_ids": [r.ref.run_id for r in reports],
            "attempts": [r.ref.attempt for r in reports],
            "worker_ids": [r.worker_id for r in reports],
            "new_states": [r.new_state.value for r in reports],
            "attempt_statuses": [r.attempt_status.value for r in reports],
            "results": [_json_or_none(r.result) for r in reports],
            "errors": [_json_or_none(r.error) for r in reports],
            "positions": list(range(len(reports))),
        }
        async with statement(self._engine) as conn:
            rows = (await conn.execute(RECORD_OUTCOMES, params)).all()
        recorded: list[RunRecord | None] = [None] * len(reports)
        for row in rows:
            recorded[row.position] = _run(row)
        return recorded

    async def cancel(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Cancel the given runs that are still active; returns them as they now are."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(CANCEL_RUNS, {"run_ids": list(run_ids)})).all()
        return [_run(row) for row in rows]

    async def get(self, run_id: str) -> RunRecord:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_RUN, {"id": run_id})).first()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return _run(row)

    async def latest_for_job(self, job_id: str) -> RunRecord | None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_LATEST_RUN, {"job_id": job_id})).first()
        return None if row is None else _run(row)

    async def list_page(
        self, job_id: str | None, conditions: Sequence[Condition], page: Page | None, limit: int
    ) -> list[RunRecord]:
        """Runs newest first."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if job_id is not None:
            where.append("r.job_id = :job_id")
            params["job_id"] = job_id
        for index, cond in enumerate(conditions):
            column = {"state": "r.state", "trigger": "r.trigger"}[cond.field]
            operator = "=" if cond.op == "=" else "<>"
            where.append(f"{column} {operator} :f{index}")
            params[f"f{index}"] = cond.value
        if page is not None:
            where.append("(r.queue_time, r.id) < (:after_time, CAST(:after_id AS uuid))")
            params.update(after_time=page.after_time, after_id=page.after_id)
        sql = f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.queue_time DESC, r.id DESC LIMIT :limit"
        async with statement(self._engine) as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return [_run(row) for row in rows]


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        job_id=row.job_id,
        job_name=row.job_name,
        state=RunState(row.state),
        attempt=row.attempt,
        trigger=Trigger(row.trigger),
        version=row.version,
        queue_time=row.queue_time,
        start_time=row.start_time,
        finish_time=row.finish_time,
        worker_id=row.worker_id,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        slot_time=row.slot_time,
    )
