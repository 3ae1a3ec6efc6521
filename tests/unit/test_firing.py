"""The firing loop around a fake schedule store: decisions, cache write-through, metrics, and a
job whose stored schedule cannot be read (it must not block the others)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from scheduler.firing import BACKLOG_GROWTH, MIN_NAP, QUARANTINE, FiringConfig, ScheduleFiring, sleep_seconds
from scheduler.firing_metrics import FiringMetrics
from taskmesh.cache.status import CacheWriter, StatusCache
from taskmesh.db.schedules import Decide
from taskmesh.names import Names
from taskmesh.records import DueJob, FiredBatch, FireDecision, RunRecord
from taskmesh.schedule_policy import FiringRules
from taskmesh.states import RunState, Trigger

NOW = datetime(2024, 6, 1, 12, 0, 0, 20_000, tzinfo=UTC)
SLOT = NOW.replace(microsecond=0)


class FakeStore:
    """Stands in for ScheduleRepository: hands out the given due jobs once."""

    def __init__(self, jobs: list[DueJob]) -> None:
        self.jobs = jobs
        self.decisions: list[FireDecision] = []

    async def fire_due(self, limit: int, decide: Decide) -> tuple[int, FiredBatch]:
        claimed, self.jobs = self.jobs[:limit], self.jobs[limit:]
        if not claimed:
            return 0, FiredBatch([], [], 0)
        self.decisions = list(decide(claimed))
        created = [
            RunRecord(f.run_id, d.job_id, "j", RunState.QUEUED, 1, Trigger.SCHEDULE, 1, NOW, slot_time=f.slot_time)
            for d in self.decisions
            for f in d.fired
        ]
        return len(claimed), FiredBatch(created, [], 0)

    async def next_due(self) -> tuple[datetime, float] | None:
        return None


def due(job_id: str, schedule: dict[str, Any]) -> DueJob:
    return DueJob(job_id, schedule, SLOT - timedelta(hours=1), SLOT, None, (), NOW)


def firing(store: FakeStore, registry: CollectorRegistry) -> tuple[ScheduleFiring, CacheWriter]:
    writer = CacheWriter(StatusCache(None, Names("unit"), 60))  # type: ignore[arg-type]  # never written
    loop = ScheduleFiring(
        store,  # type: ignore[arg-type]
        writer,
        FiringMetrics("unit", registry),
        asyncio.Event(),
        FiringConfig(batch_size=10, poll_interval=1.0, rules=FiringRules(misfire_threshold=timedelta(seconds=5))),
    )
    return loop, writer


async def test_a_batch_is_decided_written_through_and_measured() -> None:
    store = FakeStore([due(f"job-{i}", {"cron": {"expression": "* * * * * *"}}) for i in range(3)])
    registry = CollectorRegistry()
    loop, writer = firing(store, registry)
    assert await loop.fire_batch() == 3
    assert [(d.job_id, [f.slot_time for f in d.fired]) for d in store.decisions] == [
        (f"job-{i}", [SLOT]) for i in range(3)
    ]
    assert all(d.next_slot == SLOT + timedelta(seconds=1) for d in store.decisions)
    assert len(writer._pending) == 3
    count = registry.get_sample_value("taskmesh_schedule_fire_lag_seconds_count", {"scheduler": "unit"})
    total = registry.get_sample_value("taskmesh_schedule_fire_lag_seconds_sum", {"scheduler": "unit"})
    assert count == 3 and total is not None and abs(total - 3 * 0.02) < 1e-9
    assert await loop.fire_batch() == 0


async def test_an_unreadable_schedule_is_looked_at_later_and_blocks_nobody() -> None:
    store = FakeStore(
        [due("broken", {"cron": {"expression": "not a cron"}}), due("fine", {"interval": {"every": "1s"}})]
    )
    loop, _ = firing(store, CollectorRegistry())
    assert await loop.fire_batch() == 2
    broken, fine = store.decisions
    assert broken.fired == () and broken.skipped == ()
    assert broken.next_slot == SLOT and broken.next_due == NOW + QUARANTINE
    assert [f.slot_time for f in fine.fired] == [SLOT]


def _skips(decisions: Sequence[FireDecision]) -> int:
    return sum(len(d.skipped) for d in decisions)


async def test_skipped_slots_are_counted_by_reason() -> None:
    late = DueJob(
        "late",
        {"interval": {"every": "1s"}, "misfirePolicy": "SKIP"},
        SLOT,
        SLOT,
        None,
        (),
        NOW + timedelta(seconds=9),
    )
    store = FakeStore([late])
    registry = CollectorRegistry()
    loop, _ = firing(store, registry)
    await loop.fire_batch()
    skipped = registry.get_sample_value(
        "taskmesh_schedule_skipped_slots_total", {"scheduler": "unit", "reason": "MISFIRED"}
    )
    assert skipped == _skips(store.decisions) == 10


def test_the_loop_sleeps_until_the_due_slot_exactly_naps_while_others_hold_it_and_idles_long() -> None:
    assert sleep_seconds(0.002, 30.0) == 0.002, "no nap rounded up past a slot 2 ms away"
    assert sleep_seconds(4.5, 30.0) == 4.5
    assert sleep_seconds(-0.3, 30.0) == MIN_NAP and sleep_seconds(0.0, 30.0) == MIN_NAP
    assert sleep_seconds(None, 30.0) == 30.0, "nothing scheduled: only NOTIFY or the safety poll wakes it"
    assert sleep_seconds(120.0, 30.0) == 30.0


async def test_a_backlog_is_fired_in_growing_batches_up_to_a_bound() -> None:
    store = FakeStore([due(f"job-{i}", {"cron": {"expression": "* * * * * *"}}) for i in range(1000)])
    limits: list[int] = []
    fire_due = store.fire_due

    async def recording(limit: int, decide: Decide) -> tuple[int, FiredBatch]:
        limits.append(limit)
        return await fire_due(limit, decide)

    store.fire_due = recording  # type: ignore[method-assign]
    loop, _ = firing(store, CollectorRegistry())
    await loop._fire_backlog()
    # doubling from the batch size (10) to 8 x 10: 10 + 20 + 40 + 11 x 80 = 950, then the last 50
    assert limits == [10, 20, 40] + [80] * 12
    assert BACKLOG_GROWTH == 8 and store.jobs == []
