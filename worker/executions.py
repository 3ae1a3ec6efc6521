"""The attempts this worker holds: each claimed one until its outcome is settled (heartbeats
keep their leases), and the running execution of each, which the scheduler (cancel), the lease
clock or the shutdown may stop.

The pipeline fills it; the scheduler session reads it for heartbeats and stops attempts through
it. Sharing this one object is what lets both be built with their collaborators in hand."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from taskmesh.records import AttemptRef
from worker.executors.base import ExecutionOutcome

log = logging.getLogger("worker.pipeline")  # its lines keep the logger they always had


@dataclass
class Running:
    task: asyncio.Task[ExecutionOutcome]
    stop_reason: str | None = None  # "cancelled" (asked by the server) or "lost" (lease gone)


class Executions:
    def __init__(self) -> None:
        self._claimed: set[AttemptRef] = set()  # granted and not yet settled: heartbeats keep them
        self._running: dict[AttemptRef, Running] = {}

    @property
    def busy(self) -> int:
        return len(self._running)

    def executing(self) -> list[AttemptRef]:
        """Attempts whose lease this worker must keep: claimed, until the outcome is settled."""
        return list(self._claimed)

    def stop(self, ref: AttemptRef, reason: str) -> None:
        """Stop executing an attempt: the server cancelled it, or this worker lost its lease."""
        running = self._running.get(ref)
        if running is not None and running.stop_reason is None:
            log.info("stopping attempt: %s", reason, extra={"run_id": ref.run_id, "attempt": ref.attempt})
            running.stop_reason = reason
            running.task.cancel()

    def claimed(self, ref: AttemptRef) -> None:
        self._claimed.add(ref)

    def settled(self, ref: AttemptRef) -> None:
        self._claimed.discard(ref)

    def started(self, ref: AttemptRef, task: asyncio.Task[ExecutionOutcome]) -> Running:
        running = self._running[ref] = Running(task)
        return running

    def ended(self, ref: AttemptRef) -> None:
        del self._running[ref]
