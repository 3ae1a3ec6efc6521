"""Which session holds each worker_id, for every scheduler at once: a worker_id has one live
session; a stream presenting that session's key (the worker reconnecting) takes it over, any
other is refused until the session ends or expires (its scheduler died without ending it).

Each session also says what its worker serves (pools, executors, Python tasks, slots: its
Hello) and how many slots it had busy at its last heartbeat: ListWorkers and the waiting
reasons of queued runs read the live sessions."""

from __future__ import annotations

from typing import Any

from taskmesh.db.pg import Database, Query, statement
from taskmesh.records import WorkerProfile, WorkerRecord

# Takes the worker_id if free, expired, or already this session's; no row back: refused.
ACQUIRE = Query(
    """
    INSERT INTO worker_sessions AS w (worker_id, session_key, expires_at, pools, executors, tasks, slots,
                                      busy_slots, connect_time, consuming)
    VALUES (:worker_id, :session_key, clock_timestamp() + make_interval(secs => :ttl),
            CAST(:pools AS text[]), CAST(:executors AS text[]), CAST(:tasks AS text[]), :slots, :busy,
            clock_timestamp(), :consuming)
    ON CONFLICT (worker_id) DO UPDATE SET session_key = EXCLUDED.session_key, expires_at = EXCLUDED.expires_at,
        pools = EXCLUDED.pools, executors = EXCLUDED.executors, tasks = EXCLUDED.tasks, slots = EXCLUDED.slots,
        busy_slots = EXCLUDED.busy_slots, consuming = EXCLUDED.consuming,
        connect_time = CASE WHEN w.session_key = EXCLUDED.session_key AND w.expires_at >= clock_timestamp()
                            THEN w.connect_time ELSE EXCLUDED.connect_time END
    WHERE w.session_key = EXCLUDED.session_key OR w.expires_at < clock_timestamp()
    RETURNING w.worker_id
    """
)
RELEASE = Query("DELETE FROM worker_sessions WHERE worker_id = :worker_id AND session_key = :session_key")
LIVE = Query(
    """
    SELECT worker_id, pools, executors, tasks, slots, busy_slots, connect_time, consuming FROM worker_sessions
    WHERE expires_at >= clock_timestamp() ORDER BY worker_id
    """
)


class WorkerSessionRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def acquire(
        self, worker_id: str, session_key: str, ttl: float, profile: WorkerProfile | None = None, busy: int = 0
    ) -> bool:
        """True when the worker_id is now this session's for `ttl` seconds (with its profile)."""
        profile = profile or WorkerProfile()
        params = {
            "worker_id": worker_id,
            "session_key": session_key,
            "ttl": ttl,
            "pools": list(profile.pools),
            "executors": list(profile.executors),
            "tasks": list(profile.tasks),
            "slots": profile.slots,
            "busy": busy,
            "consuming": profile.consuming,
        }
        async with statement(self._engine) as conn:
            return (await conn.execute(ACQUIRE, params)).first_row() is not None

    async def release(self, worker_id: str, session_key: str) -> None:
        async with statement(self._engine) as conn:
            await conn.execute(RELEASE, {"worker_id": worker_id, "session_key": session_key})

    async def live(self) -> list[WorkerRecord]:
        """Every worker whose session has not expired, by worker_id."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(LIVE)).all_rows()
        return [_worker(row) for row in rows]


def _worker(row: Any) -> WorkerRecord:
    profile = WorkerProfile(tuple(row.pools), tuple(row.executors), tuple(row.tasks), row.slots, row.consuming)
    return WorkerRecord(row.worker_id, profile, row.busy_slots, row.connect_time)
