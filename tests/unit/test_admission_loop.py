"""The scheduler's admission loop: passes until one admits less than a batch, every change goes
to the status cache, metrics see each admission's wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry

from scheduler.admission import AdmissionLoop, AdmissionMetrics
from taskmesh.cache.status import CacheWriter
from taskmesh.db.admission import AdmissionRepository, PassResult
from taskmesh.records import RunRecord
from taskmesh.states import RunState, Trigger


def _run(index: int) -> RunRecord:
    return RunRecord(f"r{index}", "j", "job", RunState.QUEUED, 1, Trigger.MANUAL, 2, datetime.now(UTC))


class FakeAdmission:
    def __init__(self, passes: list[int]) -> None:
        self.passes = passes
        self.calls = 0

    async def admit(self, limit: int) -> PassResult:
        count = self.passes[self.calls] if self.calls < len(self.passes) else 0
        self.calls += 1
        return PassResult(admitted=[_run(i) for i in range(count)], wait_seconds=[0.5] * count)


class FakeCache:
    def __init__(self) -> None:
        self.runs: list[RunRecord] = []

    def enqueue(self, runs: list[RunRecord]) -> None:
        self.runs.extend(runs)


def test_passes_repeat_while_batches_are_full() -> None:
    admission, cache, registry = FakeAdmission([3, 3, 1, 3]), FakeCache(), CollectorRegistry()
    loop = AdmissionLoop(
        cast(AdmissionRepository, admission),
        cast(CacheWriter, cache),
        asyncio.Event(),
        AdmissionMetrics(registry),
        batch_size=3,
        poll_interval=1.0,
        rate_poll_interval=0.05,
    )
    assert asyncio.run(loop.admit_all()) == 7
    assert admission.calls == 3  # the short third pass ended it
    assert len(cache.runs) == 7
    count: Any = registry.get_sample_value("taskmesh_admission_wait_seconds_count")
    assert count == 7


class IdleAdmission(FakeAdmission):
    """Nothing awaits admission: every pass is idle (it skipped its transaction)."""

    def __init__(self) -> None:
        super().__init__([])
        self.rate_checks = 0

    async def admit(self, limit: int) -> PassResult:
        self.calls += 1
        return PassResult(idle=True)

    async def rate_limited_waiting(self) -> bool:
        self.rate_checks += 1
        return False


def test_an_idle_pass_records_no_pass_and_skips_the_rate_limit_check() -> None:
    admission, registry, wake = IdleAdmission(), CollectorRegistry(), asyncio.Event()
    loop = AdmissionLoop(
        cast(AdmissionRepository, admission),
        cast(CacheWriter, FakeCache()),
        wake,
        AdmissionMetrics(registry),
        batch_size=3,
        poll_interval=1.0,
        rate_poll_interval=0.05,
    )
    assert asyncio.run(loop.admit_all()) == 0
    assert admission.calls == 1
    assert registry.get_sample_value("taskmesh_admission_pass_seconds_count") == 0
    assert loop._idle
