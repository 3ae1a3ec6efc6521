"""Claims, outcome reports and heartbeats from every connected worker, group-committed to
PostgreSQL, and the changes written through to Redis; and which session holds each worker_id.

What the ledger needs of the database and of Redis is stated by the Protocols below
(taskmesh.db and taskmesh.cache implement them; scheduler.testing has in-memory fakes). Metrics
and log lines are not the ledger's business: observers see each committed batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from scheduler.outcomes import AttemptEnding, resolve
from taskmesh.batching import GroupCommitter
from taskmesh.records import (
    AttemptRef,
    ClaimedAttempt,
    ClaimRequest,
    LogEntry,
    OutcomeReport,
    RunRecord,
    WorkerProfile,
)
from taskmesh.states import RunState


class AttemptStore(Protocol):
    """The run statements of an attempt's life (taskmesh.db.runs.RunRepository)."""

    async def claim(
        self, requests: Sequence[ClaimRequest], lease_seconds: float
    ) -> list[ClaimedAttempt | None]: ...
    async def retry_policies(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]: ...
    async def record_outcomes(self, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]: ...
    async def extend_leases(
        self, worker_id: str, session: str, refs: Sequence[AttemptRef], lease_seconds: float
    ) -> dict[AttemptRef, RunState]: ...


class LogStore(Protocol):
    """taskmesh.db.logs.LogRepository: returns the lines it stored (those of the session's attempts)."""

    async def append(
        self,
        worker_id: str,
        session: str,
        entries: Sequence[LogEntry],
        truncated_by_worker: Sequence[AttemptRef] = (),
    ) -> list[LogEntry]: ...


class SessionStore(Protocol):
    """taskmesh.db.worker_sessions.WorkerSessionRepository: one live session per worker_id."""

    async def acquire(
        self, worker_id: str, session_key: str, ttl: float, profile: WorkerProfile | None = None, busy: int = 0
    ) -> bool: ...
    async def release(self, worker_id: str, session_key: str) -> None: ...


class StatusWriter(Protocol):
    """taskmesh.cache.status.CacheWriter: write-through to Redis, in the background."""

    def enqueue(self, runs: Sequence[RunRecord]) -> None: ...
    def enqueue_logs(self, entries: Sequence[LogEntry]) -> None: ...


class LedgerObserver(Protocol):
    """Sees what the ledger committed (scheduler.run_telemetry.RunObserver: metrics, log lines)."""

    def claimed(self, requests: Sequence[ClaimRequest], claimed: Sequence[ClaimedAttempt | None]) -> None: ...
    def ended(self, endings: Sequence[AttemptEnding], recorded: Sequence[RunRecord | None]) -> None: ...
    def heartbeat(self, worker_id: str, refs: Sequence[AttemptRef]) -> None: ...


class AttemptLedger:
    def __init__(
        self,
        runs: AttemptStore,
        logs: LogStore,
        cache_writer: StatusWriter,
        lease_seconds: float,
        sessions: SessionStore,
        observers: Sequence[LedgerObserver] = (),
    ) -> None:
        self._runs = runs
        self._logs = logs
        self._sessions = sessions
        self._cache_writer = cache_writer
        self._observers = tuple(observers)
        self.lease_seconds = lease_seconds
        self._claims: GroupCommitter[ClaimRequest, ClaimedAttempt | None] = GroupCommitter(self._claim_batch)
        self._endings: GroupCommitter[AttemptEnding, RunRecord | None] = GroupCommitter(self._ending_batch)

    async def claim(self, request: ClaimRequest) -> ClaimedAttempt | None:
        """The claimed attempt, or None if it is not claimable (stale, duplicate, cancelled, gone)."""
        return await self._claims.submit(request)

    async def record(self, ending: AttemptEnding) -> RunRecord | None:
        """The run after the attempt ended, or None if the report lost the fencing race."""
        return await self._endings.submit(ending)

    async def open_session(self, worker_id: str, session: str, profile: WorkerProfile | None = None) -> bool:
        """False while another live session holds the worker_id (on any scheduler)."""
        return await self._sessions.acquire(worker_id, session, self.lease_seconds, profile)

    async def close_session(self, worker_id: str, session: str) -> None:
        await self._sessions.release(worker_id, session)

    async def heartbeat(
        self, worker_id: str, session: str, refs: Sequence[AttemptRef], profile: WorkerProfile | None = None
    ) -> dict[AttemptRef, RunState]:
        """Keep the session and extend its leases; returns the attempts it still holds, with
        their state."""
        for observer in self._observers:
            observer.heartbeat(worker_id, refs)
        # Takes the worker_id too if the Connect could not (the database was out of reach).
        await self._sessions.acquire(worker_id, session, self.lease_seconds, profile, busy=len(refs))
        if not refs:
            return {}
        return await self._runs.extend_leases(worker_id, session, refs, self.lease_seconds)

    async def append_logs(
        self, worker_id: str, session: str, entries: Sequence[LogEntry], truncated: Sequence[AttemptRef] = ()
    ) -> None:
        stored = await self._logs.append(worker_id, session, entries, truncated)
        self._cache_writer.enqueue_logs(stored)

    async def _claim_batch(self, requests: Sequence[ClaimRequest]) -> list[ClaimedAttempt | None]:
        claimed = await self._runs.claim(requests, self.lease_seconds)
        self._cache_writer.enqueue([c.run for c in claimed if c is not None])
        for observer in self._observers:
            observer.claimed(requests, claimed)
        return claimed

    async def _ending_batch(self, endings: Sequence[AttemptEnding]) -> list[RunRecord | None]:
        failed = [e.ref.run_id for e in endings if e.status == RunState.FAILED]
        policies = await self._runs.retry_policies(failed) if failed else {}
        reports = [resolve(e, policies.get(e.ref.run_id)) for e in endings]
        recorded = await self._runs.record_outcomes(reports)
        self._cache_writer.enqueue([r for r in recorded if r is not None])
        for observer in self._observers:
            observer.ended(endings, recorded)
        return recorded
