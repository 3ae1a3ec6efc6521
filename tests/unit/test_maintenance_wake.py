"""The maintenance loop promotes retries when they are due, not on a fixed tick: idle, it looks
once per REAP_EVERY_SECONDS (one statement: taskmesh.db.runs.MAINTENANCE_DUE); a retry recorded
by this scheduler's ledger wakes it at once; it reaps and fails late starts only when the look
found some."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from scheduler import maintenance
from scheduler.maintenance import Maintenance, RetryWake
from taskmesh.cache.status import CacheWriter, StatusCache
from taskmesh.names import Names
from taskmesh.records import MaintenanceDue, RunRecord
from taskmesh.states import RunState


class _Runs:
    """The statements the loop runs, counted; what is due as the test sets it."""

    def __init__(self) -> None:
        self.looks = self.promotions = self.reaps = self.late_checks = 0
        self.due: datetime | None = None
        self.expired = self.late = False
        self._looked = asyncio.Condition()

    async def maintenance_due(self, grace: float) -> MaintenanceDue:
        async with self._looked:
            self.looks += 1
            self._looked.notify_all()
        return MaintenanceDue(self.due, self.expired, self.late, datetime.now(UTC))

    async def looked(self, times: int, timeout: float = 2.0) -> None:
        """Wait until the loop has looked at what is due `times` times in all."""
        async with asyncio.timeout(timeout), self._looked:
            await self._looked.wait_for(lambda: self.looks >= times)

    async def promote_retries(self) -> list[RunRecord]:
        if self.due is not None and self.due <= datetime.now(UTC):
            self.promotions += 1
            self.due = None  # promoted: none waits any more
        return []

    async def expire_attempts(self, resolve: Callable[..., Any], grace: float) -> list[RunRecord]:
        self.reaps += 1
        self.expired = False
        return []

    async def fail_not_started(self) -> list[RunRecord]:
        self.late_checks += 1
        self.late = False
        return []


def _loop(runs: _Runs) -> Maintenance:
    writer = CacheWriter(StatusCache(None, Names("unit"), 60))  # type: ignore[arg-type]  # never written
    return Maintenance(runs, writer, timeout_grace_seconds=15)  # type: ignore[arg-type]


async def test_idle_it_looks_for_retries_once_per_reap_interval_and_a_recorded_retry_wakes_it() -> None:
    runs = _Runs()
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.looked(1)
        await asyncio.sleep(0.2)  # a 0.2 s tick would have looked again by now
        assert runs.looks == 1
        retried = [_run(RunState.RETRY_WAIT)]
        RetryWake(loop).ended([], retried)
        await runs.looked(2, timeout=0.5)
    finally:
        task.cancel()


async def test_it_sleeps_until_the_earliest_due_retry() -> None:
    runs = _Runs()
    runs.due = datetime.now(UTC) + timedelta(seconds=0.1)
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.looked(2, timeout=maintenance.REAP_EVERY_SECONDS * 0.8)
        await runs.looked(3, timeout=maintenance.REAP_EVERY_SECONDS * 0.8)  # looks again once promoted
        assert runs.promotions == 1 and runs.due is None
    finally:
        task.cancel()


async def test_outcomes_that_are_not_retries_wake_nothing() -> None:
    runs = _Runs()
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.looked(1)
        RetryWake(loop).ended([], [_run(RunState.SUCCEEDED), None])
        await asyncio.sleep(0.2)
        assert runs.looks == 1
    finally:
        task.cancel()


async def test_it_reaps_and_fails_late_starts_only_when_the_look_found_some() -> None:
    runs = _Runs()
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.looked(1)
        assert (runs.reaps, runs.late_checks) == (0, 0)
        runs.expired = runs.late = True
        await runs.looked(2, timeout=maintenance.REAP_EVERY_SECONDS * 2)
        await runs.looked(3, timeout=maintenance.REAP_EVERY_SECONDS * 2)
        assert (runs.reaps, runs.late_checks) == (1, 1)
    finally:
        task.cancel()


def _run(state: RunState) -> Any:
    return SimpleNamespace(state=state)  # what RetryWake reads of a recorded run
