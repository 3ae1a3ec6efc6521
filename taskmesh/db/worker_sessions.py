"""Which session holds each worker_id, for every scheduler at once: a worker_id has one live
session; a stream presenting that session's key (the worker reconnecting) takes it over, any
other is refused until the session ends or expires (its scheduler died without ending it)."""

from __future__ import annotations

from taskmesh.db.pg import Database, Query, statement

# Takes the worker_id if free, expired, or already this session's; no row back: refused.
ACQUIRE = Query(
    """
    INSERT INTO worker_sessions AS w (worker_id, session_key, expires_at)
    VALUES (:worker_id, :session_key, clock_timestamp() + make_interval(secs => :ttl))
    ON CONFLICT (worker_id) DO UPDATE SET session_key = EXCLUDED.session_key, expires_at = EXCLUDED.expires_at
    WHERE w.session_key = EXCLUDED.session_key OR w.expires_at < clock_timestamp()
    RETURNING w.worker_id
    """
)
RENEW = Query(
    """
    UPDATE worker_sessions SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
    WHERE worker_id = :worker_id AND session_key = :session_key
    """
)
RELEASE = Query("DELETE FROM worker_sessions WHERE worker_id = :worker_id AND session_key = :session_key")


class WorkerSessionRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def acquire(self, worker_id: str, session_key: str, ttl: float) -> bool:
        """True when the worker_id is now this session's for `ttl` seconds."""
        params = {"worker_id": worker_id, "session_key": session_key, "ttl": ttl}
        async with statement(self._engine) as conn:
            return (await conn.execute(ACQUIRE, params)).first_row() is not None

    async def renew(self, worker_id: str, session_key: str, ttl: float) -> None:
        params = {"worker_id": worker_id, "session_key": session_key, "ttl": ttl}
        async with statement(self._engine) as conn:
            await conn.execute(RENEW, params)

    async def release(self, worker_id: str, session_key: str) -> None:
        async with statement(self._engine) as conn:
            await conn.execute(RELEASE, {"worker_id": worker_id, "session_key": session_key})
