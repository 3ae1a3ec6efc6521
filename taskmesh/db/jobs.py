"""Job definitions: one method per query."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskmesh.db.engine import statement
from taskmesh.errors import AlreadyExists, NotFound
from taskmesh.records import Condition, JobChanges, JobRecord, Json, Page

JOB_COLUMNS = "j.id::text AS id, j.name, j.description, j.executor, j.labels, j.create_time, j.update_time"

INSERT_JOB = text(
    f"""
    INSERT INTO jobs AS j (id, name, description, executor, labels, create_time, update_time)
    VALUES (:id, :name, :description, CAST(:executor AS jsonb), CAST(:labels AS jsonb), now(), now())
    RETURNING {JOB_COLUMNS}
    """
)
SELECT_JOB = text(f"SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = :id")
DELETE_JOB = text("DELETE FROM jobs WHERE id = :id")
LATEST_RUN_STATE = (
    "(SELECT r.state FROM runs r WHERE r.job_id = j.id ORDER BY r.queue_time DESC, r.id DESC LIMIT 1)"
)


class JobRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, job_id: str, name: str, description: str, executor: Json, labels: dict[str, str]
    ) -> JobRecord:
        params = {
            "id": job_id,
            "name": name,
            "description": description,
            "executor": json.dumps(executor),
            "labels": json.dumps(labels),
        }
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_JOB, params)).one()
        except AlreadyExists as error:
            raise AlreadyExists(f"a job named {name!r} already exists") from error
        return _job(row)

    async def get(self, job_id: str) -> JobRecord:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_JOB, {"id": job_id})).first()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row)

    async def list_page(self, conditions: Sequence[Condition], page: Page | None, limit: int) -> list[JobRecord]:
        where, params = _job_filter_sql(conditions)
        if page is not None:
            where.append("(j.create_time, j.id) > (:after_time, CAST(:after_id AS uuid))")
            params.update(after_time=page.after_time, after_id=page.after_id)
        sql = f"SELECT {JOB_COLUMNS} FROM jobs j"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY j.create_time, j.id LIMIT :limit"
        params["limit"] = limit
        async with statement(self._engine) as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return [_job(row) for row in rows]

    async def update(self, job_id: str, changes: JobChanges) -> JobRecord:
        assignments: list[str] = ["update_time = now()"]
        params: dict[str, Any] = {"id": job_id}
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
        sql = text(f"UPDATE jobs AS j SET {', '.join(assignments)} WHERE j.id = :id RETURNING {JOB_COLUMNS}")
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(sql, params)).first()
        except AlreadyExists as error:
            raise AlreadyExists(f"a job named {changes.name!r} already exists") from error
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row)

    async def delete(self, job_id: str) -> None:
        async with statement(self._engine) as conn:
            result = await conn.execute(DELETE_JOB, {"id": job_id})
        if result.rowcount == 0:
            raise NotFound(f"job {job_id} not found")


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
        if cond.op == "=":
            where.append(f"{column} = :{key}")
            params[key] = cond.value
        elif cond.op == "!=":
            where.append(f"{column} IS DISTINCT FROM :{key}")
            params[key] = cond.value
        else:
            where.append(f"strpos({column}, :{key}) > 0")
            params[key] = cond.value
    return where, params


def _job(row: Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        description=row.description,
        executor=row.executor,
        labels=row.labels,
        create_time=row.create_time,
        update_time=row.update_time,
    )
