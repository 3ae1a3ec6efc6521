"""Job definitions: one method per query."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskmesh.audit import AuditContext
from taskmesh.db.audit import audited
from taskmesh.db.paging import Keyset, page_query
from taskmesh.db.pg import Database, Query, statement
from taskmesh.records import (
    Condition,
    FlowSettings,
    JobChanges,
    JobRecord,
    Json,
    Page,
    ParameterPolicy,
    ScheduleSetting,
)
from taskmesh.service_errors import AlreadyExists, NotFound

JOB_COLUMNS = """
    j.id::text AS id, j.name, j.description, j.executor, j.labels, j.create_time, j.update_time,
    j.schedule, j.retry_policy, j.attempt_timeout_seconds, j.paused, j.next_fire_at, j.last_fire_at,
    j.last_fire_lag_seconds, j.misfired_slots, j.skipped_slots, j.parameters, j.parameter_schema, j.retention,
    j.pool, j.start_deadline_seconds, j.priority, j.concurrency, j.rate_limit
"""

# Every write of a job records its call's audit row in the same statement (taskmesh.db.audit).
JOB_RESOURCE = "'jobs/' || changed.id"
INSERT_JOB = audited(
    f"""
    INSERT INTO jobs AS j (id, name, description, executor, labels, create_time, update_time,
                           schedule, next_fire_at, due_at, retry_policy, attempt_timeout_seconds,
                           parameters, parameter_schema, retention, pool, start_deadline_seconds, priority,
                           concurrency, rate_limit)
    VALUES (:id, :name, :description, CAST(:executor AS jsonb), CAST(:labels AS jsonb),
            COALESCE(CAST(:now AS timestamptz), now()), COALESCE(CAST(:now AS timestamptz), now()),
            CAST(:schedule AS jsonb), :next_fire_at, :due_at, CAST(:retry_policy AS jsonb),
            :attempt_timeout_seconds, CAST(:parameters AS jsonb), CAST(:parameter_schema AS jsonb),
            CAST(:retention AS jsonb), :pool, :start_deadline_seconds,
            :priority, CAST(:concurrency AS jsonb), CAST(:rate_limit AS jsonb))
    RETURNING {JOB_COLUMNS}
    """,
    JOB_RESOURCE,
)
SELECT_EXISTING = Query("SELECT id::text AS id FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))")
# What a trigger needs to merge and validate parameters, with the version it was read at.
SELECT_PARAMETER_POLICIES = Query(
    """
    SELECT id::text AS id, update_time, parameters, parameter_schema, name, concurrency, rate_limit FROM jobs
    WHERE id = ANY(CAST(:ids AS uuid[]))
    """
)
SELECT_JOB = Query(f"SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = :id")
DELETE_JOB = audited("DELETE FROM jobs WHERE id = :id RETURNING id::text AS id", JOB_RESOURCE)
LATEST_RUN_STATE = (
    "(SELECT r.state FROM runs r WHERE r.job_id = j.id ORDER BY r.queue_time DESC, r.id DESC LIMIT 1)"
)
# Idempotent: pausing a paused job (or resuming a running one) changes nothing.
PAUSE_JOB = audited(
    f"""
    UPDATE jobs AS j SET paused = true, update_time = CASE WHEN j.paused THEN j.update_time ELSE now() END
    WHERE j.id = :id RETURNING {JOB_COLUMNS}
    """,
    JOB_RESOURCE,
)
# Slots due before resumed_at came while the job was paused: schedulers treat them as missed.
RESUME_JOB = audited(
    f"""
    UPDATE jobs AS j SET paused = false,
        resumed_at = CASE WHEN j.paused THEN now() ELSE j.resumed_at END,
        update_time = CASE WHEN j.paused THEN now() ELSE j.update_time END
    WHERE j.id = :id RETURNING {JOB_COLUMNS}
    """,
    JOB_RESOURCE,
)


class JobRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(
        self,
        job_id: str,
        name: str,
        description: str,
        executor: Json,
        labels: dict[str, str],
        *,
        audit: AuditContext,
        now: datetime | None = None,
        schedule: ScheduleSetting | None = None,
        retry_policy: Json | None = None,
        attempt_timeout_seconds: float | None = None,
        parameters: Json | None = None,
        parameter_schema: Json | None = None,
        retention: Json | None = None,
        pool: str = "default",
        start_deadline_seconds: float | None = None,
        flow: FlowSettings | None = None,
    ) -> JobRecord:
        """`now` becomes the creation time (an interval schedule without anchor counts from it);
        the database clock when None."""
        schedule = schedule or ScheduleSetting(None, None, None)
        flow = flow or FlowSettings()
        params = {
            "id": job_id,
            "name": name,
            "description": description,
            "executor": json.dumps(executor),
            "labels": json.dumps(labels),
            "now": now,
            "schedule": _json_or_none(schedule.schedule),
            "next_fire_at": schedule.next_fire_at,
            "due_at": schedule.due_at,
            "retry_policy": _json_or_none(retry_policy),
            "attempt_timeout_seconds": attempt_timeout_seconds,
            "parameters": _json_or_none(parameters),
            "parameter_schema": _json_or_none(parameter_schema),
            "retention": _json_or_none(retention),
            "pool": pool,
            "start_deadline_seconds": start_deadline_seconds,
            "priority": flow.priority if flow.priority is not None else 5,
            "concurrency": _json_or_none(flow.concurrency),
            "rate_limit": _json_or_none(flow.rate_limit),
            **audit.params(),
        }
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_JOB, params)).one_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"a job named {name!r} already exists") from error
        audit.mark_recorded()
        return _job(row)

    async def existing(self, job_ids: set[str]) -> set[str]:
        """Which of these jobs exist."""
        async with statement(self._engine) as conn:
            rows = await conn.execute(SELECT_EXISTING, {"ids": sorted(job_ids)})
            return {row.id for row in rows.all_rows()}

    async def parameter_policies(self, job_ids: set[str]) -> dict[str, ParameterPolicy]:
        """The default parameters, schema, name and limits of each of these jobs that exists, with
        its version."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_PARAMETER_POLICIES, {"ids": sorted(job_ids)})).all_rows()
        return {row.id: _parameter_policy(row) for row in rows}

    async def get(self, job_id: str) -> JobRecord:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_JOB, {"id": job_id})).first_row()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row)

    async def list_page(self, conditions: Sequence[Condition], page: Page | None, limit: int) -> list[JobRecord]:
        where, params = _job_filter_sql(conditions)
        order = Keyset("j.create_time", "j.id")
        query, values = page_query(f"SELECT {JOB_COLUMNS} FROM jobs j", where, params, order, page, limit)
        async with statement(self._engine) as conn:
            rows = (await conn.execute(query, values)).all_rows()
        return [_job(row) for row in rows]

    async def update(self, job_id: str, changes: JobChanges, audit: AuditContext) -> JobRecord:
        assignments: list[str] = ["update_time = now()"]
        params: dict[str, Any] = {"id": job_id, **audit.params()}
        if changes.name is not None:
            assignments.append("name = :name")
            params["name"] = changes.name
        if changes.description is not None:
            assignments.append("description = :description")
            params["description"] = changes.description
        if changes.executor is not None:
            assignments.append("executor = CAST(:executor AS jsonb)")
            params["executor"] = json.dumps(changes.executor)
        if changes.labels is not None:
            assignments.append("labels = CAST(:labels AS jsonb)")
            params["labels"] = json.dumps(changes.labels)
        if changes.schedule is not None:
            # A new schedule starts afresh: its first slot after now, nothing pending.
            assignments.append(
                "schedule = CAST(:schedule AS jsonb), next_fire_at = :next_fire_at, due_at = :due_at"
            )
            params.update(
                schedule=_json_or_none(changes.schedule.schedule),
                next_fire_at=changes.schedule.next_fire_at,
                due_at=changes.schedule.due_at,
            )
        if changes.retry_policy is not None:
            assignments.append("retry_policy = CAST(:retry_policy AS jsonb)")
            params["retry_policy"] = _json_or_none(changes.retry_policy.value)
        if changes.attempt_timeout_seconds is not None:
            assignments.append("attempt_timeout_seconds = :attempt_timeout_seconds")
            params["attempt_timeout_seconds"] = changes.attempt_timeout_seconds.value
        if changes.parameters is not None:
            assignments.append("parameters = CAST(:parameters AS jsonb)")
            params["parameters"] = _json_or_none(changes.parameters.value)
        if changes.parameter_schema is not None:
            assignments.append("parameter_schema = CAST(:parameter_schema AS jsonb)")
            params["parameter_schema"] = _json_or_none(changes.parameter_schema.value)
        if changes.retention is not None:
            assignments.append("retention = CAST(:retention AS jsonb)")
            params["retention"] = _json_or_none(changes.retention.value)
        if changes.pool is not None:
            assignments.append("pool = :pool")
            params["pool"] = changes.pool
        if changes.start_deadline_seconds is not None:
            assignments.append("start_deadline_seconds = :start_deadline_seconds")
            params["start_deadline_seconds"] = changes.start_deadline_seconds.value
        _flow_assignments(changes, assignments, params)
        # The audit detail names the columns changed, never their values.
        fields = [a.split(" = ", 1)[0] for a in assignments[1:]]
        params["audit_detail"] = json.dumps({"fields": fields})
        sql = audited(
            f"UPDATE jobs AS j SET {', '.join(assignments)} WHERE j.id = :id RETURNING {JOB_COLUMNS}",
            JOB_RESOURCE,
            "CAST(:audit_detail AS jsonb)",
        )
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(sql, params)).first_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"a job named {changes.name!r} already exists") from error
        if row is None:
            raise NotFound(f"job {job_id} not found")
        audit.mark_recorded()
        return _job(row)

    async def pause(self, job_id: str, audit: AuditContext) -> JobRecord:
        return await self._one(PAUSE_JOB, job_id, audit)

    async def resume(self, job_id: str, audit: AuditContext) -> JobRecord:
        return await self._one(RESUME_JOB, job_id, audit)

    async def _one(self, query: Query, job_id: str, audit: AuditContext) -> JobRecord:
        async with statement(self._engine) as conn:
            row = (await conn.execute(query, {"id": job_id, **audit.params()})).first_row()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        audit.mark_recorded()
        return _job(row)

    async def delete(self, job_id: str, audit: AuditContext) -> None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(DELETE_JOB, {"id": job_id, **audit.params()})).first_row()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        audit.mark_recorded()


def _flow_assignments(changes: JobChanges, assignments: list[str], params: dict[str, Any]) -> None:
    """Flow control (README "Flow control"): runs created from now on take the new values."""
    if changes.priority is not None:
        assignments.append("priority = :priority")
        params["priority"] = changes.priority
    if changes.concurrency is not None:
        assignments.append("concurrency = CAST(:concurrency AS jsonb)")
        params["concurrency"] = _json_or_none(changes.concurrency.value)
    if changes.rate_limit is not None:
        assignments.append("rate_limit = CAST(:rate_limit AS jsonb)")
        params["rate_limit"] = _json_or_none(changes.rate_limit.value)


def _job_filter_sql(conditions: Sequence[Condition]) -> tuple[list[str], dict[str, Any]]:
    """Translate validated filter terms into SQL; values are always bound, never inlined."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for index, cond in enumerate(conditions):
        key = f"f{index}"
        if cond.field == "name":
            column = "j.name"
        elif cond.field == "state":
            column = LATEST_RUN_STATE
        elif cond.field.startswith("labels."):
            column = f"(j.labels ->> :{key}_label)"
            params[f"{key}_label"] = cond.field.removeprefix("labels.")
        else:  # validated upstream; refuse rather than guess
            raise ValueError(f"unsupported filter field {cond.field}")
        if cond.op == "=" and cond.field.startswith("labels."):
            # Containment reads the jobs_labels GIN index (migration 0012): the same rows as
            # ->> = (labels map strings to strings), without walking every job.
            where.append(f"j.labels @> jsonb_build_object(CAST(:{key}_label AS text), CAST(:{key} AS text))")
            params[key] = cond.value
        elif cond.op == "=":
            where.append(f"{column} = :{key}")
            params[key] = cond.value
        elif cond.op == "!=":
            where.append(f"{column} IS DISTINCT FROM :{key}")
            params[key] = cond.value
        else:
            where.append(f"strpos({column}, :{key}) > 0")
            params[key] = cond.value
    return where, params


def _job(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        description=row.description,
        executor=row.executor,
        labels=row.labels,
        create_time=row.create_time,
        update_time=row.update_time,
        schedule=row.schedule,
        retry_policy=row.retry_policy,
        attempt_timeout_seconds=row.attempt_timeout_seconds,
        paused=row.paused,
        next_fire_at=row.next_fire_at,
        last_fire_at=row.last_fire_at,
        last_fire_lag_seconds=row.last_fire_lag_seconds,
        misfired_slots=row.misfired_slots,
        skipped_slots=row.skipped_slots,
        parameters=row.parameters,
        parameter_schema=row.parameter_schema,
        retention=row.retention,
        pool=row.pool,
        start_deadline_seconds=row.start_deadline_seconds,
        priority=row.priority,
        concurrency=row.concurrency,
        rate_limit=row.rate_limit,
    )


def _json_or_none(value: Json | None) -> str | None:
    return None if value is None else json.dumps(value)


def _parameter_policy(row: Any) -> ParameterPolicy:
    flow = {"concurrency": row.concurrency, "rate_limit": row.rate_limit}  # as runs snapshot it
    has_flow = row.concurrency is not None or row.rate_limit is not None
    return ParameterPolicy(
        row.update_time, row.parameters, row.parameter_schema, row.name, flow if has_flow else None
    )
