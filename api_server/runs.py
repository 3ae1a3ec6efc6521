"""What JobService does with runs, free of gRPC: trigger, cancel, retry, read, logs.

A trigger's parameters are merged over the job's defaults and validated (api_server.parameters)
before anything is created; a batch with one refused item creates nothing. The same
idempotency key returns the first run only with the same (merged) parameters: other parameters
are refused with ALREADY_EXISTS naming the key and the first run, never silently ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from api_server.parameters import ParameterResolver, TriggerInput
from taskmesh.audit import AuditContext
from taskmesh.batching import GroupCommitter
from taskmesh.cache.status import CacheWriter
from taskmesh.db.admission import AdmissionRepository, KeyUsage
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.records import Condition, Json, Page, RunLogs, RunRecord, RunRequest
from taskmesh.service_errors import AlreadyExists, FailedPrecondition, NotFound
from taskmesh.states import RunState, Trigger

STALE_RETRIES = 3


def _same_parameters(run: RunRecord, request: RunRequest, field: str = "idempotency_key") -> None:
    """An earlier run returned for the request's key must have been made with its parameters."""
    if run.id != request.run_id and (run.parameters or None) != (request.parameters or None):
        raise AlreadyExists(
            f"{field}: {request.idempotency_key!r} was first used with other parameters (run {run.id}); "
            "use another key for other parameters"
        )


class RunsObserver(Protocol):
    """Sees the runs a cancel changed and the runs a trigger created ended (on_limit SKIP)
    (api_server.run_telemetry.CancelObserver: metrics, logs)."""

    def cancelled(self, runs: Sequence[RunRecord]) -> None: ...

    def skipped(self, runs: Sequence[RunRecord]) -> None: ...


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
        self._parameters = ParameterResolver(jobs)
        # Concurrent triggers share one statement (group commit).
        self._triggers: GroupCommitter[RunRequest, RunRecord] = GroupCommitter(self._create_runs, max_batch=500)

    async def trigger(
        self,
        job_id: str,
        idempotency_key: str | None,
        audit: AuditContext,
        parameters: Json | None = None,
        priority: int | None = None,
    ) -> RunRecord:
        """One run; concurrent calls share a statement, which writes each call's audit row (a
        request refused as stale writes none: the one made after validating again writes it)."""
        given = TriggerInput(job_id, idempotency_key, parameters, priority=priority)
        refresh: frozenset[str] = frozenset()
        for _ in range(STALE_RETRIES):
            [request] = await self._parameters.requests([given], refresh)
            try:
                run = await self._triggers.submit(replace(request, audit=audit))
            except NotFound:
                if not await self._changed_since(request):
                    raise
                refresh = frozenset({job_id})  # the job changed since: merge and validate again
                continue
            _same_parameters(run, request)
            return run
        raise FailedPrecondition(f"job {job_id} keeps changing; trigger it again")

    async def trigger_many(self, triggers: Sequence[TriggerInput], audit: AuditContext) -> list[RunRecord]:
        """Triggers -> their runs, in order. Unknown jobs and refused parameters fail the whole
        batch before anything is created (errors name the item: requests[3].parameters.x). A
        job changed between that check and the insert is checked again for its items (which
        may then be refused while the others' runs exist). The batch is one audit row, written
        by its first insert."""
        job_ids = {t.job_id for t in triggers}
        # One query, as the existence check it replaces: deleted or changed jobs are seen
        # before anything is created (a validator is compiled again only for a new version).
        requests = await self._parameters.requests(triggers, frozenset(job_ids))
        missing = sorted(job_ids - {r.job_id for r in requests if r.job_version is not None})
        if missing:
            raise NotFound(f"jobs not found: {', '.join(missing)}")
        results: list[RunRecord | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        batch_audit: AuditContext | None = audit
        for _ in range(STALE_RETRIES):
            asked = [requests[i] for i in pending]
            created = await self._runs.create(asked, Trigger.MANUAL, batch_audit=batch_audit)
            batch_audit = None  # the batch's one row: written by its first insert
            self._created(asked, created)
            for index, run in zip(pending, created, strict=True):
                results[index] = run
            pending = [i for i in pending if results[i] is None]
            stale = {requests[i].job_id for i in pending if await self._changed_since(requests[i])}
            if not pending or len(stale) < len({requests[i].job_id for i in pending}):
                break
            again = await self._parameters.requests([triggers[i] for i in pending], frozenset(stale))
            for index, request in zip(pending, again, strict=True):
                requests[index] = request
        runs = [run for run in results if run is not None]
        if len(runs) < len(requests):  # a job deleted (or changed and changed again) meanwhile
            raise NotFound("a job of the batch was deleted or changed while its runs were being created")
        for index, (run, request) in enumerate(zip(runs, requests, strict=True)):
            _same_parameters(run, request, f"requests[{index}].idempotency_key")
        return runs

    async def _changed_since(self, request: RunRequest) -> bool:
        """Does the job exist at another version than the one `request` was checked at?"""
        if request.job_version is None:
            return False
        await self._parameters.requests([], frozenset({request.job_id}))
        current = self._parameters.version(request.job_id)
        return current is not None and current != request.job_version

    async def _create_runs(self, requests: Sequence[RunRequest]) -> list[RunRecord | BaseException]:
        created = await self._runs.create(requests, Trigger.MANUAL)
        self._created(requests, created)
        return [
            run or NotFound(f"job {request.job_id} not found")
            for run, request in zip(created, requests, strict=True)
        ]

    def _created(self, requests: Sequence[RunRequest], created: Sequence[RunRecord | None]) -> None:
        runs = [run for run in created if run is not None]
        self._cache_writer.enqueue(runs)
        # New runs that are ended already: on_limit SKIP, at trigger (an idempotency key's
        # earlier run, finished or not, is no new run)
        skipped = [
            run
            for run, request in zip(created, requests, strict=True)
            if run is not None and run.id == request.run_id and run.state.is_terminal
        ]
        if skipped:
            for observer in self._observers:
                observer.skipped(skipped)

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

    async def waiting_reasons(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Flow control: why these runs wait for admission (runs that do not are left out)."""
        return {} if self._admission is None else await self._admission.waiting_reasons(run_ids)

    async def dispatch_reasons(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Flow control: why these admitted QUEUED runs are not out to RabbitMQ yet (the in-flight
        bound holds their queue); runs whose work unit is out are left out."""
        return {} if self._admission is None else await self._admission.dispatch_reasons(run_ids)

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
