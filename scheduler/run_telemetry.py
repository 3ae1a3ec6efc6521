"""What the scheduler sees of runs and workers, turned into metrics and log lines.

scheduler.main builds one WorkerRoster and one RunObserver and hands them to what they watch:
the ledger calls the observer after each group commit (claims, outcomes) and on each heartbeat,
the reaper after each expiry batch, the WorkerService streams tell the roster who connects.
Nothing here touches the database.

- runs by terminal state and executor kind, trigger-to-start latency (claim time minus queue
  time, first attempts only: a retry's wait is its backoff) and execution time per attempt;
- connected workers, their slots and busy slots (granted claims until their outcome is
  recorded, corrected by every heartbeat, which lists what the worker executes);
- one log line per claim, outcome, retry decision and refused report, with job, run and attempt.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Histogram

from scheduler.outcomes import AttemptEnding
from taskmesh.broker.amqp import AmqpConnection
from taskmesh.metrics import RUNS_FINISHED, executor_kind, labelled
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, RunRecord
from taskmesh.service_errors import BrokerUnavailable
from taskmesh.states import RunState

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600)
# Executor kinds remembered from claims until the run ends (a scheduler restart forgets them:
# those runs end as executor "unknown").
MAX_REMEMBERED_RUNS = 100_000

TRIGGER_TO_START = Histogram(
    "taskmesh_run_trigger_to_start_seconds",
    "From a run's queue time (trigger, schedule fire) to the claim of its first attempt",
    ["executor"],
    buckets=LATENCY_BUCKETS,
)
EXECUTION_SECONDS = Histogram(
    "taskmesh_attempt_execution_seconds",
    "From an attempt's claim to its recorded end, by executor kind and how the attempt ended",
    ["executor", "state"],
    buckets=DURATION_BUCKETS,
)


@dataclass
class _Worker:
    slots: int
    streams: int = 0
    busy: set[AttemptRef] = field(default_factory=set)


@dataclass(frozen=True)
class WorkerLoad:
    worker_id: str
    slots: int
    busy: int


class WorkerRoster:
    """The workers connected to this scheduler and the attempts each one holds."""

    def __init__(self) -> None:
        self._workers: dict[str, _Worker] = {}

    def connected(self, worker_id: str, slots: int) -> None:
        worker = self._workers.setdefault(worker_id, _Worker(slots))
        worker.slots = slots
        worker.streams += 1  # a reconnecting worker may briefly have two streams

    def disconnected(self, worker_id: str) -> None:
        worker = self._workers.get(worker_id)
        if worker is not None:
            worker.streams -= 1
            if worker.streams <= 0:
                del self._workers[worker_id]

    def claimed(self, worker_id: str, ref: AttemptRef) -> None:
        if (worker := self._workers.get(worker_id)) is not None:
            worker.busy.add(ref)

    def released(self, worker_id: str, ref: AttemptRef) -> None:
        if (worker := self._workers.get(worker_id)) is not None:
            worker.busy.discard(ref)

    def heartbeat(self, worker_id: str, refs: Sequence[AttemptRef]) -> None:
        """A heartbeat lists every attempt the worker executes: it replaces what we counted."""
        if (worker := self._workers.get(worker_id)) is not None:
            worker.busy = set(refs)

    def loads(self) -> list[WorkerLoad]:
        """Safe to call from the metrics thread (copies before iterating)."""
        return [WorkerLoad(worker_id, w.slots, len(w.busy)) for worker_id, w in list(self._workers.items())]


def _ids(run: RunRecord, attempt: int | None = None, worker_id: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"job_id": run.job_id, "run_id": run.id, "attempt": attempt or run.attempt}
    if worker_id:
        extra["worker_id"] = worker_id
    return extra


def _seconds_between(start: Any, end: Any) -> float | None:
    """Seconds between two times stored in an attempt's history (ISO strings)."""
    try:
        return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except ValueError:
        return None


class RunObserver:
    def __init__(self, roster: WorkerRoster) -> None:
        self._roster = roster
        self._kinds: OrderedDict[str, str] = OrderedDict()

    def heartbeat(self, worker_id: str, refs: Sequence[AttemptRef]) -> None:
        self._roster.heartbeat(worker_id, refs)

    def kind_of(self, run_id: str) -> str:
        return self._kinds.get(run_id, "unknown")

    def claimed(self, requests: Sequence[ClaimRequest], claimed: Sequence[ClaimedAttempt | None]) -> None:
        for request, claim in zip(requests, claimed, strict=True):
            if claim is None:
                continue
            run, kind = claim.run, executor_kind(claim.executor_json)
            self._remember(run.id, kind)
            self._roster.claimed(request.worker_id, request.ref)
            if run.attempt == 1 and run.start_time is not None:
                labelled(TRIGGER_TO_START, kind).observe(
                    max(0.0, (run.start_time - run.queue_time).total_seconds())
                )
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "attempt %d claimed by %s",
                    run.attempt,
                    request.worker_id,
                    extra=_ids(run, None, request.worker_id),
                )

    def ended(self, endings: Sequence[AttemptEnding], recorded: Sequence[RunRecord | None]) -> None:
        for ending, run in zip(endings, recorded, strict=True):
            self._roster.released(ending.worker_id, ending.ref)
            if run is None:
                log.info(
                    "report of attempt %d by %s refused: the attempt is no longer the worker's",
                    ending.ref.attempt,
                    ending.worker_id,
                    extra={
                        "run_id": ending.ref.run_id,
                        "attempt": ending.ref.attempt,
                        "worker_id": ending.worker_id,
                    },
                )
                continue
            self._attempt_ended(run, ending.ref.attempt)

    def reaped(self, runs: Iterable[RunRecord]) -> None:
        """Attempts the reaper closed (lease expired or timeout overrun); it logs them itself."""
        for run in runs:
            last = run.attempts[-1] if run.attempts else {}
            self._roster.released(
                str(last.get("worker_id") or ""), AttemptRef(run.id, int(last.get("attempt") or run.attempt))
            )
            self._attempt_ended(run, int(last.get("attempt") or run.attempt), quiet=True)

    def _attempt_ended(self, run: RunRecord, attempt: int, quiet: bool = False) -> None:
        last = run.attempts[-1] if run.attempts else {}
        kind = self.kind_of(run.id)
        seconds = _seconds_between(last.get("start_time"), last.get("finish_time"))
        if seconds is not None:
            labelled(EXECUTION_SECONDS, kind, str(last.get("state") or run.state.value)).observe(max(0.0, seconds))
        if run.state.is_terminal:
            labelled(RUNS_FINISHED, run.state.value, kind).inc()
            self._kinds.pop(run.id, None)
        if quiet or not log.isEnabledFor(logging.INFO):
            return
        extra = _ids(run, attempt, str(last.get("worker_id") or "") or None)
        if run.state == RunState.RETRY_WAIT:
            error = run.error or {}
            retry_at = run.retry_at.isoformat() if run.retry_at else "soon"
            log.info(
                "attempt %d failed (%s: %s); retry at %s",
                attempt,
                error.get("kind", "ERROR"),
                error.get("message", ""),
                retry_at,
                extra=extra,
            )
        elif run.state == RunState.FAILED:
            log.info(
                "attempt %d failed; run FAILED: %s", attempt, (run.error or {}).get("message", ""), extra=extra
            )
        else:
            log.info("attempt %d ended; run %s", attempt, run.state.value, extra=extra)

    def _remember(self, run_id: str, kind: str) -> None:
        self._kinds[run_id] = kind
        self._kinds.move_to_end(run_id)
        while len(self._kinds) > MAX_REMEMBERED_RUNS:
            self._kinds.popitem(last=False)


class ConnectionWatch:
    """Follows the relay's current RabbitMQ connection for the health check."""

    def __init__(self) -> None:
        self._connection: AmqpConnection | None = None

    def watch(self, connection: AmqpConnection) -> None:
        self._connection = connection

    async def check(self) -> dict[str, Any] | None:
        if self._connection is None or not self._connection.is_open:
            raise BrokerUnavailable("the outbox relay has no connection to RabbitMQ")
        return None
