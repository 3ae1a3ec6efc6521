"""The audit log: the CTE that records a change in its own statement, refusals, listing, purge.

`audited(query, resource)` turns a data-modifying statement with RETURNING into one that also
inserts an audit row per changed row (none when nothing changed), in the same statement and so
the same transaction: the row exists if and only if the change committed. Its bind parameters
are taskmesh.audit.AuditContext.params(). Single triggers, which are group-committed, bind the
same columns as arrays instead (see taskmesh.db.runs.CREATE_RUNS).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskmesh.audit import AuditContext, AuditEvent, AuditQuery
from taskmesh.db.pg import Database, Query, statement

AUDIT_COLUMNS = "actor, role, api_key_id, method, request_id, resource, outcome, detail"
# The audit context's bound values, in AUDIT_COLUMNS' order up to request_id.
AUDIT_VALUES = ":audit_actor, :audit_role, :audit_key, :audit_method, :audit_request_id"


def audit_cte(source: str, resource: str, detail: str = "NULL", name: str = "audited") -> str:
    """A CTE inserting one 'OK' row per row of `source` (a CTE name); `resource` and `detail`
    are SQL expressions over it."""
    return (
        f"{name} AS (INSERT INTO audit_events ({AUDIT_COLUMNS}) "
        f"SELECT {AUDIT_VALUES}, {resource}, 'OK', {detail} FROM {source})"
    )


def audited(query: Query | str, resource: str, detail: str = "NULL") -> Query:
    """`query` (INSERT/UPDATE/DELETE ... RETURNING, no WITH of its own) plus its audit rows;
    returns what `query` returns. `resource`/`detail` are SQL over its RETURNING columns
    (as `changed`)."""
    return Query(f"WITH changed AS ({query}), {audit_cte('changed', resource, detail)} SELECT * FROM changed")


INSERT_EVENTS = Query(
    f"""
    INSERT INTO audit_events ({AUDIT_COLUMNS})
    SELECT * FROM unnest(CAST(:actors AS text[]), CAST(:roles AS text[]), CAST(:keys AS text[]),
                         CAST(:methods AS text[]), CAST(:request_ids AS text[]), CAST(:resources AS text[]),
                         CAST(:outcomes AS text[]), CAST(:details AS jsonb[]))
    """
)

EVENT_COLUMNS = f"id, time, {AUDIT_COLUMNS}"

# Oldest first by id (rows arrive in time order); a bounded batch per call, no long lock.
PURGE_EVENTS = Query(
    """
    DELETE FROM audit_events WHERE id IN (
        SELECT id FROM audit_events WHERE time < :before ORDER BY id LIMIT :limit
    )
    """
)


class AuditRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def record(self, entries: Sequence[tuple[AuditContext, str, str, dict[str, Any] | None]]) -> list[None]:
        """(context, resource, outcome, detail) rows in one statement: refusals, and calls that
        succeeded without their repository recording them (see taskmesh.audit)."""
        params = {
            "actors": [c.actor for c, _, _, _ in entries],
            "roles": [c.role for c, _, _, _ in entries],
            "keys": [c.api_key_id for c, _, _, _ in entries],
            "methods": [c.method for c, _, _, _ in entries],
            "request_ids": [c.request_id for c, _, _, _ in entries],
            "resources": [r for _, r, _, _ in entries],
            "outcomes": [o for _, _, o, _ in entries],
            "details": [None if d is None else json.dumps(d) for _, _, _, d in entries],
        }
        async with statement(self._engine) as conn:
            await conn.execute(INSERT_EVENTS, params)
        return [None] * len(entries)

    async def list_events(self, query: AuditQuery) -> list[AuditEvent]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": query.limit}
        for column in ("actor", "resource", "method"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if query.start_time is not None:
            where.append("time >= :start_time")
            params["start_time"] = query.start_time
        if query.end_time is not None:
            where.append("time < :end_time")
            params["end_time"] = query.end_time
        if query.before_id is not None:
            where.append("id < :before_id")
            params["before_id"] = query.before_id
        sql = f"SELECT {EVENT_COLUMNS} FROM audit_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT :limit"
        async with statement(self._engine) as conn:
            rows = (await conn.execute(Query(sql), params)).all_rows()
        return [_event(row) for row in rows]


async def purge_audit_events(engine: Database, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` audit events older than `before`, oldest first; returns how many.
    For the retention loops (scheduler/maintenance.py): call it until it returns less than
    `limit`, with before = now - settings.audit_retention_days (skip when that is 0)."""
    async with statement(engine) as conn:
        result = await conn.execute(PURGE_EVENTS, {"before": before, "limit": limit})
    return int(result.rowcount)


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        id=int(row.id),
        time=row.time,
        actor=row.actor,
        role=row.role,
        api_key_id=row.api_key_id,
        method=row.method,
        resource=row.resource,
        request_id=row.request_id,
        outcome=row.outcome,
        detail=row.detail,
    )
