"""The connected workers, as every scheduler registered them (worker_sessions): ListWorkers
reads them, and the health monitor's refresh keeps the waiting reasons' roster current."""

from __future__ import annotations

from typing import Protocol

from api_server.waiting import WorkerCapacity
from taskmesh.records import WorkerRecord


class LiveWorkers(Protocol):
    """taskmesh.db.worker_sessions.WorkerSessionRepository."""

    async def live(self) -> list[WorkerRecord]: ...


class WorkerRoster:
    def __init__(self, sessions: LiveWorkers, capacity: WorkerCapacity) -> None:
        self._sessions = sessions
        self.capacity = capacity

    async def list_workers(self, pool: str = "") -> list[WorkerRecord]:
        workers = await self._sessions.live()
        self.capacity.observe([w.profile for w in workers])
        return [w for w in workers if not pool or pool in w.profile.pools]

    async def refresh(self) -> None:
        await self.list_workers()
