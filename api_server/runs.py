"""What JobService does with runs, free of gRPC: trigger, cancel, retry, read, logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from taskmesh.batching import GroupCommitter
from taskmesh.cache.status import CacheWriter
from taskmesh.db.admission import AdmissionRepository, KeyUsage
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
        admission: AdmissionRepository | None = None,
    ) -> None:
        self._admission = admission
        self._observers = tuple(observers)
        self._jobs = jobs
        self._runs = runs
        self._logs = logs
        self._cache_writer = cache_writer
        # Concurrent triggers share one statement (group commit).
        self._triggers: GroupCommitter[RunRequest, RunRecord] = GroupCommitter(self._create_runs, max_batch=500)

    async def trigger(self, job_id: str, idempotency_key: str | None, priority: int | None = None) -> RunRecord:
        return await self._triggers.submit(RunRequest(new_id(), job_id, idempotency_key, priority))

    async def trigger_many(self, triggers: Sequence[tuple[str, str | None, int | None]]) -> list[RunRecord]:
        """(job id, idempotency key, priority) -> their runs, in order. Unknown jobs fail the
        whole batch before anything is created."""
        missing = sorted(set(t[0] for t in triggers) - await self._jobs.existing({t[0] for t in triggers}))
        if missing:
            raise NotFound(f"jobs not found: {', '.join(missing)}")
        requests = [RunRequest(new_id(), job_id, key, priority) for job_id, key, priority in triggers]
        created = await self._runs.create(requests, Trigger.MANUAL)
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

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel now if queued or waiting to retry; ask the worker to stop if running."""
        cancelled = await self._runs.cancel([run_id])
        for observer in self._observers:
            observer.cancelled(cancelled)
        if cancelled:
            self._cache_writer.enqueue(cancelled)
            return cancelled[0]
        run = await self._runs.get(run_id)
        if run.state == RunState.CANCELLING:
            return run  # already asked: cancelling twice is not an error
        raise FailedPrecondition(f"run {run_id} is {run.state.value}; only active runs can be cancelled")

    async def retry(self, run_id: str) -> RunRecord:
        run = await self._runs.retry_run(run_id, new_id())
        self._cache_writer.enqueue([run])
        return run

    async def waiting_reasons(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Flow control: why these runs wait for admission (runs that do not are left out)."""
        return {} if self._admission is None else await self._admission.waiting_reasons(run_ids)

    async def concurrency_keys(self, prefix: str, after: str, limit: int) -> list[KeyUsage]:
        return [] if self._admission is None else await self._admission.list_keys(prefix, after, limit)

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
