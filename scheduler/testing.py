"""In-memory fakes of what the AttemptLedger stands on (scheduler.attempts' Protocols), for unit
tests of the ledger and of the WorkerService streams without PostgreSQL or Redis.

They keep the rules the real statements guard, in a few lines each: a claim takes a QUEUED run
at its current attempt and makes the claiming session its owner; outcomes, heartbeats and log
lines count only from the owner's session; one live session per worker_id. Integration tests
keep the real services (tests/integration, tests/e2e)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from scheduler.attempts import AttemptLedger, LedgerObserver
from taskmesh.records import (
    AttemptRef,
    ClaimedAttempt,
    ClaimRequest,
    LogEntry,
    OutcomeReport,
    RunRecord,
    WorkerProfile,
)
from taskmesh.states import LEASED_STATES, RunState, Trigger

SLEEP_EXECUTOR = json.dumps({"sleep": {}})


@dataclass
class _Run:
    record: RunRecord
    executor_json: str
    timeout_seconds: float
    retry_policy: dict[str, Any] | None
    owner: tuple[str, str] | None = None  # (worker_id, session key) of the current attempt


class InMemoryRuns:
    """scheduler.attempts.AttemptStore; `batches` lists the size of each statement's batch."""

    def __init__(self) -> None:
        self.runs: dict[str, _Run] = {}
        self.batches: list[tuple[str, int]] = []

    def add(
        self,
        run_id: str,
        *,
        state: RunState = RunState.QUEUED,
        attempt: int = 1,
        executor_json: str = SLEEP_EXECUTOR,
        timeout_seconds: float = 60.0,
        retry_policy: dict[str, Any] | None = None,
    ) -> None:
        record = RunRecord(
            id=run_id,
            job_id=f"job-of-{run_id}",
            job_name="job",
            state=state,
            attempt=attempt,
            trigger=Trigger.MANUAL,
            version=1,
            queue_time=datetime.now(UTC),
        )
        self.runs[run_id] = _Run(record, executor_json, timeout_seconds, retry_policy)

    def state(self, run_id: str) -> RunState:
        return self.runs[run_id].record.state

    def set_state(self, run_id: str, state: RunState) -> None:
        run = self.runs[run_id]
        run.record = replace(run.record, state=state)

    async def claim(self, requests: Sequence[ClaimRequest], lease_seconds: float) -> list[ClaimedAttempt | None]:
        self.batches.append(("claim", len(requests)))
        return [self._claim_one(request) for request in requests]

    def _claim_one(self, request: ClaimRequest) -> ClaimedAttempt | None:
        run = self.runs.get(request.ref.run_id)
        if run is None or run.record.state != RunState.QUEUED or run.record.attempt != request.ref.attempt:
            return None
        now = datetime.now(UTC)
        run.owner = (request.worker_id, request.session)
        run.record = replace(
            run.record,
            state=RunState.RUNNING,
            start_time=now,
            worker_id=request.worker_id,
            version=run.record.version + 1,
            attempts=[
                *run.record.attempts,
                {"attempt": request.ref.attempt, "worker_id": request.worker_id, "start_time": now.isoformat()},
            ],
        )
        return ClaimedAttempt(run.record, run.executor_json, run.timeout_seconds)

    async def retry_policies(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        self.batches.append(("retry_policies", len(run_ids)))
        return {run_id: self.runs[run_id].retry_policy for run_id in run_ids if run_id in self.runs}

    async def record_outcomes(self, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
        self.batches.append(("record_outcomes", len(reports)))
        return [self._record_one(report) for report in reports]

    def _record_one(self, report: OutcomeReport) -> RunRecord | None:
        run = self._held(report.ref, report.worker_id, report.session)
        if run is None:
            return None
        now = datetime.now(UTC)
        last = {**run.record.attempts[-1], "state": report.attempt_status.value, "finish_time": now.isoformat()}
        run.owner = None
        run.record = replace(
            run.record,
            state=report.new_state,
            finish_time=now if report.new_state.is_terminal else None,
            result=report.result,
            error=report.error,
            version=run.record.version + 1,
            attempts=[*run.record.attempts[:-1], last],
        )
        return run.record

    async def extend_leases(
        self, worker_id: str, session: str, refs: Sequence[AttemptRef], lease_seconds: float
    ) -> dict[AttemptRef, RunState]:
        self.batches.append(("extend_leases", len(refs)))
        held = {ref: self._held(ref, worker_id, session) for ref in refs}
        return {ref: run.record.state for ref, run in held.items() if run is not None}

    def owns(self, ref: AttemptRef, session: str) -> bool:
        run = self.runs.get(ref.run_id)
        return (
            run is not None
            and run.record.attempt == ref.attempt
            and run.owner is not None
            and run.owner[1] == session
        )

    def _held(self, ref: AttemptRef, worker_id: str, session: str | None) -> _Run | None:
        run = self.runs.get(ref.run_id)
        if run is None or run.record.state not in LEASED_STATES or run.record.attempt != ref.attempt:
            return None
        if run.owner is None or run.owner[0] != worker_id or (session is not None and run.owner[1] != session):
            return None
        return run


class InMemoryLogs:
    """scheduler.attempts.LogStore: keeps the lines of attempts the session owns."""

    def __init__(self, runs: InMemoryRuns) -> None:
        self._runs = runs
        self.lines: list[LogEntry] = []
        self.truncated: set[AttemptRef] = set()

    async def append(
        self,
        worker_id: str,
        session: str,
        entries: Sequence[LogEntry],
        truncated_by_worker: Sequence[AttemptRef] = (),
    ) -> list[LogEntry]:
        stored = [entry for entry in entries if self._runs.owns(entry.ref, session)]
        self.lines.extend(stored)
        self.truncated.update(ref for ref in truncated_by_worker if self._runs.owns(ref, session))
        return stored


class InMemorySessions:
    """scheduler.attempts.SessionStore: a worker_id is one session's until its ttl runs out."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, float]] = {}  # worker_id -> (session key, expires at)
        self.profiles: dict[str, tuple[WorkerProfile | None, int]] = {}  # worker_id -> (profile, busy)

    async def acquire(
        self, worker_id: str, session_key: str, ttl: float, profile: WorkerProfile | None = None, busy: int = 0
    ) -> bool:
        current = self.held.get(worker_id)
        if current is not None and current[0] != session_key and current[1] > time.monotonic():
            return False
        self.held[worker_id] = (session_key, time.monotonic() + ttl)
        self.profiles[worker_id] = (profile, busy)
        return True

    async def release(self, worker_id: str, session_key: str) -> None:
        if self.held.get(worker_id, ("", 0.0))[0] == session_key:
            del self.held[worker_id]


@dataclass
class RecordingStatusWriter:
    """scheduler.attempts.StatusWriter: what would have been written through to Redis."""

    runs: list[RunRecord] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)

    def enqueue(self, runs: Sequence[RunRecord]) -> None:
        self.runs.extend(runs)

    def enqueue_logs(self, entries: Sequence[LogEntry]) -> None:
        self.logs.extend(entries)


@dataclass
class InMemoryStore:
    """Everything a ledger stands on, in memory."""

    runs: InMemoryRuns = field(default_factory=InMemoryRuns)
    sessions: InMemorySessions = field(default_factory=InMemorySessions)
    cache: RecordingStatusWriter = field(default_factory=RecordingStatusWriter)
    logs: InMemoryLogs = field(init=False)

    def __post_init__(self) -> None:
        self.logs = InMemoryLogs(self.runs)

    def ledger(self, lease_seconds: float = 30.0, observers: Sequence[LedgerObserver] = ()) -> AttemptLedger:
        return AttemptLedger(self.runs, self.logs, self.cache, lease_seconds, self.sessions, observers)
