"""The maintenance loop promotes retries when they are due, not on a fixed tick: idle, it looks
once per REAP_EVERY_SECONDS; a retry recorded by this scheduler's ledger wakes it at once."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from scheduler import maintenance
from scheduler.maintenance import Maintenance, RetryWake
from taskmesh.cache.status import CacheWriter, StatusCache
from taskmesh.names import Names
from taskmesh.records import RunRecord
from taskmesh.states import RunState


class _Runs:
    """The statements the loop runs, counted; next_retry_due as the test sets it."""

    def __init__(self) -> None:
        self.promotions = 0
        self.due: datetime | None = None
        self._looked = asyncio.Condition()

    async def promote_retries(self) -> list[RunRecord]:
        async with self._looked:
            self.promotions += 1
            self._looked.notify_all()
        return []

    async def promoted(self, times: int, timeout: float = 2.0) -> None:
        """Wait until the loop has looked for due retries `times` times in all."""
        async with asyncio.timeout(timeout), self._looked:
            await self._looked.wait_for(lambda: self.promotions >= times)

    async def expire_attempts(self, resolve: Callable[..., Any], grace: float) -> list[RunRecord]:
        return []

    async def fail_not_started(self) -> list[RunRecord]:
        return []

    async def next_retry_due(self) -> datetime | None:
        return self.due


def _loop(runs: _Runs) -> Maintenance:
    writer = CacheWriter(StatusCache(None, Names("unit"), 60))  # type: ignore[arg-type]  # never written
    return Maintenance(runs, writer, timeout_grace_seconds=15)  # type: ignore[arg-type]


async def test_idle_it_looks_for_retries_once_per_reap_interval_and_a_recorded_retry_wakes_it() -> None:
    runs = _Runs()
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.promoted(1)
        await asyncio.sleep(0.2)  # a 0.2 s tick would have looked again by now
        assert runs.promotions == 1
        retried = [_run(RunState.RETRY_WAIT)]
        RetryWake(loop).ended([], retried)
        await runs.promoted(2, timeout=0.5)
    finally:
        task.cancel()


async def test_it_sleeps_until_the_earliest_due_retry() -> None:
    runs = _Runs()
    runs.due = datetime.now(UTC) + timedelta(seconds=0.1)
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.promoted(2, timeout=maintenance.REAP_EVERY_SECONDS * 0.8)
    finally:
        task.cancel()


async def test_outcomes_that_are_not_retries_wake_nothing() -> None:
    runs = _Runs()
    loop = _loop(runs)
    task = asyncio.create_task(loop.run_forever())
    try:
        await runs.promoted(1)
        RetryWake(loop).ended([], [_run(RunState.SUCCEEDED), None])
        await asyncio.sleep(0.2)
        assert runs.promotions == 1
    finally:
        task.cancel()


def _run(state: RunState) -> Any:
    return SimpleNamespace(state=state)  # what RetryWake reads of a recorded run
