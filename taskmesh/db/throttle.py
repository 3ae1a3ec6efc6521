"""Login throttling counters, shared by every api_server replica (see taskmesh.auth.throttle).

A change reads and writes a login's counters (one row per key) in one transaction, holding the
rows' locks in key order, so that concurrent attempts on any replica see each other's counts.
Times are the database's, so that replicas' clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from taskmesh.auth.throttle import ThrottleState, fresh
from taskmesh.db.pg import Database, Query, statement, transaction

INSERT_MISSING = Query(
    "INSERT INTO login_throttle (key, failures, window_start) "
    "SELECT key, 0, clock_timestamp() FROM unnest(CAST(:keys AS text[])) AS key ORDER BY key "
    "ON CONFLICT (key) DO NOTHING"
)
SELECT_LOCKED = Query(
    "SELECT key, failures, window_start, blocked_until, clock_timestamp() AS now FROM login_throttle "
    "WHERE key = ANY(CAST(:keys AS text[])) ORDER BY key FOR UPDATE"
)
UPDATE_ROW = Query(
    "UPDATE login_throttle SET failures = :failures, window_start = :window_start, blocked_until = :blocked_until "
    "WHERE key = :key"
)
# Rows whose window is over and that hold no wait: they would start afresh anyway.
DELETE_STALE = Query(
    "DELETE FROM login_throttle WHERE window_start < clock_timestamp() - CAST(:window AS interval) "
    "AND (blocked_until IS NULL OR blocked_until < clock_timestamp())"
)

Change = Callable[[Mapping[str, ThrottleState], datetime], Mapping[str, ThrottleState]]


class ThrottleRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def change(self, keys: Sequence[str], change: Change) -> None:
        """Apply `change(current states, now)` to the keys' rows (created empty if missing)."""
        ordered = sorted(set(keys))
        async with transaction(self._engine) as conn:
            await conn.execute(INSERT_MISSING, {"keys": ordered})
            rows = (await conn.execute(SELECT_LOCKED, {"keys": ordered})).all_rows()
            # No rows only if a clean-up deleted them in between: they start afresh.
            now: datetime = rows[0].now if rows else datetime.now(UTC)
            current = {row.key: ThrottleState(row.failures, row.window_start, row.blocked_until) for row in rows}
            for key in ordered:
                current.setdefault(key, fresh(now))
            for key, state in change(current, now).items():
                params = {
                    "key": key,
                    "failures": state.failures,
                    "window_start": state.window_start,
                    "blocked_until": state.blocked_until,
                }
                await conn.execute(UPDATE_ROW, params)

    async def delete_stale(self, window: timedelta) -> int:
        async with statement(self._engine) as conn:
            result = await conn.execute(DELETE_STALE, {"window": window})
        return result.rowcount
