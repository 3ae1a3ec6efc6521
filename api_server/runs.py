"""What JobService does with runs, free of gRPC: trigger, cancel, retry, read, logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from taskmesh.audit import AuditContext
from taskmesh.batching import GroupCommitter
from taskmesh.cache.status import CacheWriter
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.records import Condition, Page, RunLogs, RunRecord, RunRequest
from taskmesh.service_errors import FailedPrecondition, NotFound
from taskmesh.states import RunState, Trigger


class RunsObserver(Protocol):
    """Sees the runs a cancel changed (api_server.run_telemetry.CancelObserver: metrics, logs)."""

    def cancelled(self, runs: Sequence[RunRecord]) -> None: ...


class Runs:
    def __init__(
        self,
        jobs: JobRepository,
        runs: RunRepository,
        logs: LogRepository,
        cache_writer: CacheWriter,
        observers: Sequence[RunsObserver] = (),
    ) -> None:
        self._observers = tuple(observers)
        self._jobs = jobs
        self._runs = runs
        self._logs = logs
        self._cache_writer = cache_writer
        # Concurrent triggers share one statement (group commit).
        self._triggers: GroupCommitter[RunRequest, RunRecord] = GroupCommitter(self._create_runs, max_batch=500)

    async def trigger(self, job_id: str, idempotency_key: str | None, audit: AuditContext) -> RunRecord:
        """One run; concurrent calls share a statement, which writes each call's audit row."""
        return await self._triggers.submit(RunRequest(new_id(), job_id, idempotency_key, audit))

    async def trigger_many(
        self, triggers: Sequence[tuple[str, str | None]], audit: AuditContext
    ) -> list[RunRecord]:
        """(job id, idempotency key) pairs -> their runs, in order. Unknown jobs fail the whole
        batch before anything is created. The batch is one audit row, written by the insert."""
        missing = sorted(
            set(job_id for job_id, _ in triggers) - await self._jobs.existing({j for j, _ in triggers})
        )
        if missing:
            raise NotFound(f"jobs not found: {', '.join(missing)}")
        requests = [RunRequest(new_id(), job_id, key) for job_id, key in triggers]
        created = await self._runs.create(requests, Trigger.MANUAL, batch_audit=audit)
        runs = [run for run in created if run is not None]
        self._cache_writer.enqueue(runs)
        if len(runs) < len(requests):  # a job deleted meanwhile
            raise NotFound("a job of the batch was deleted while its runs were being created")
        return runs

    async def _create_runs(self, requests: Sequence[RunRequest]) -> list[RunRecord | BaseException]:
        created = await self._runs.create(requests, Trigger.MANUAL)
        self._cache_writer.enqueue([run for run in created if run is not None])
        return [
            run or NotFound(f"job {request.job_id} not found")
            for run, request in zip(created, requests, strict=True)
        ]

    async def cancel(self, run_id: str, audit: AuditContext) -> RunRecord:
        """Cancel now if queued or waiting to retry; ask the worker to stop if running."""
        cancelled = await self._runs.cancel([run_id], audit)
        for observer in self._observers:
            observer.cancelled(cancelled)
        if cancelled:
            self._cache_writer.enqueue(cancelled)
            return cancelled[0]
        run = await self._runs.get(run_id)
        if run.state == RunState.CANCELLING:
            return run  # already asked: cancelling twice is not an error
        raise FailedPrecondition(f"run {run_id} is {run.state.value}; only active runs can be cancelled")

    async def retry(self, run_id: str, audit: AuditContext) -> RunRecord:
        run = await self._runs.retry_run(run_id, new_id(), audit)
        self._cache_writer.enqueue([run])
        return run

    async def get(self, run_id: str) -> RunRecord:
        return await self._runs.get(run_id)

    async def list_runs(
        self, job_id: str | None, conditions: Sequence[Condition], page: Page | None, limit: int
    ) -> list[RunRecord]:
        if job_id is not None:
            await self._jobs.get(job_id)  # NOT_FOUND rather than an empty list
        return await self._runs.list_page(job_id, conditions, page, limit)

    async def logs(self, run_id: str, attempt: int | None, after_id: int, limit: int) -> RunLogs:
        await self._runs.get(run_id)  # NOT_FOUND for an unknown run
        return await self._logs.read(run_id, attempt, after_id, limit)
