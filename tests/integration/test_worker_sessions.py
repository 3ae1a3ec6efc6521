"""worker_sessions: one live session per worker_id, whichever scheduler holds it."""

from __future__ import annotations

import asyncio

from taskmesh.db.pg import Database
from taskmesh.db.worker_sessions import WorkerSessionRepository
from taskmesh.ids import new_id


async def test_a_live_worker_id_is_refused_to_every_other_session(engine: Database) -> None:
    sessions = WorkerSessionRepository(engine)
    worker = f"w-{new_id()}"
    assert await sessions.acquire(worker, "key-1", ttl=30)
    assert not await sessions.acquire(worker, "key-2", ttl=30)
    assert await sessions.acquire(worker, "key-1", ttl=30)  # the same session reconnecting
    await sessions.release(worker, "key-2")  # not its session: changes nothing
    assert not await sessions.acquire(worker, "key-2", ttl=30)
    await sessions.release(worker, "key-1")
    assert await sessions.acquire(worker, "key-2", ttl=30)


async def test_a_session_nobody_renews_expires(engine: Database) -> None:
    sessions = WorkerSessionRepository(engine)
    worker = f"w-{new_id()}"
    assert await sessions.acquire(worker, "key-1", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await sessions.acquire(worker, "key-2", ttl=30)
    assert not await sessions.acquire(worker, "key-1", ttl=30)
