"""Firing schedules against the real PostgreSQL (and Redis for the status cache): what one
firing transaction writes, and several firing loops sharing the same jobs."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from scheduler.firing import FiringConfig, ScheduleFiring
from scheduler.firing_metrics import FiringMetrics
from taskmesh import schedule_policy
from taskmesh.audit import AuditContext
from taskmesh.cache.status import CacheWriter, StatusCache, connect_redis
from taskmesh.db.jobs import JobRepository
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import RunRepository
from taskmesh.db.schedules import ScheduleRepository
from taskmesh.db.schema import ensure_database, ensure_schema
from taskmesh.ids import new_id
from taskmesh.names import Names
from taskmesh.records import DueJob, FireDecision, Page, RunRequest, ScheduleSetting
from taskmesh.service_errors import DatabaseUnavailable
from taskmesh.states import RunState, SkipReason, Trigger
from tests.support import Isolation, eventually

pytestmark = pytest.mark.integration

RULES = schedule_policy.FiringRules(misfire_threshold=timedelta(seconds=5))
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def firing_isolation() -> Iterator[Isolation]:
    """A database of its own: firing claims every due job in the database it runs on."""
    isolation = Isolation.create("f")
    ensure_database(isolation.database_url)
    ensure_schema(isolation.database_url)
    yield isolation
    isolation.drop()


@pytest.fixture
async def db(firing_isolation: Isolation) -> AsyncIterator[Database]:
    engine = Database(firing_isolation.database_url, pool_size=4)
    yield engine
    async with engine.transaction() as conn:
        await conn.execute(Query("DELETE FROM jobs"))
        await conn.execute(Query("DELETE FROM outbox"))
    await engine.dispose()


async def scheduled_job(engine: Database, schedule: dict[str, Any], next_fire_at: datetime, **fields: Any) -> str:
    job_id = new_id()
    parsed = schedule_policy.from_json(schedule)
    due = schedule_policy.due_time(parsed, job_id, next_fire_at)
    await JobRepository(engine).create(
        job_id,
        f"job-{job_id}",
        "",
        {"noop": {}},
        {},
        audit=AuditContext.system("tests"),
        now=next_fire_at - timedelta(hours=1),
        schedule=ScheduleSetting(schedule, next_fire_at, due),
        **fields,
    )
    return job_id


def deciding(rules: schedule_policy.FiringRules = RULES) -> Any:
    def decide(jobs: list[DueJob]) -> list[FireDecision]:
        return [
            schedule_policy.decide(
                schedule_policy.from_json(j.schedule).with_default_anchor(j.create_time), j, rules, new_id
            )
            for j in jobs
        ]

    return decide


async def rows(engine: Database, sql: str, **params: Any) -> list[Any]:
    async with engine.statement() as conn:
        return list((await conn.execute(Query(sql), params)).all_rows())


async def test_a_due_slot_becomes_a_scheduled_run_with_its_outbox_row(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    job_id = await scheduled_job(
        db,
        {"interval": {"every": "60s"}},
        slot,
        retry_policy={"maxAttempts": 5},
        attempt_timeout_seconds=42.0,
    )
    claimed, fired = await ScheduleRepository(db).fire_due(10, deciding())
    assert claimed == 1 and fired.conflicts == 0 and fired.cancelled == []
    (run,) = fired.created
    assert (run.job_id, run.slot_time, run.trigger, run.state) == (job_id, slot, Trigger.SCHEDULE, RunState.QUEUED)
    (stored,) = await rows(
        db,
        "SELECT retry_policy, attempt_timeout_seconds, slot_time FROM runs WHERE job_id = :id",
        id=job_id,
    )
    assert stored == ({"maxAttempts": 5}, 42.0, slot)
    assert await rows(db, "SELECT attempt FROM outbox WHERE run_id = :id", id=run.id) == [(1,)]
    job = await JobRepository(db).get(job_id)
    assert job.next_fire_at == slot + timedelta(seconds=60)
    assert job.last_fire_at == slot
    assert job.last_fire_lag_seconds == pytest.approx((run.queue_time - slot).total_seconds())
    assert (job.misfired_slots, job.skipped_slots) == (0, 0)
    # not due any more: nothing to claim
    assert (await ScheduleRepository(db).fire_due(10, deciding()))[0] == 0
    next_due = await ScheduleRepository(db).next_due()
    assert next_due is not None and 55 < next_due[1] <= 60


async def test_missed_slots_are_recorded_and_counted(db: Database) -> None:
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    once = await scheduled_job(db, {"interval": {"every": "1s"}}, first)
    skip = await scheduled_job(db, {"interval": {"every": "1s"}, "misfirePolicy": "SKIP"}, first)
    await ScheduleRepository(db).fire_due(10, deciding())

    once_job, skip_job = await JobRepository(db).get(once), await JobRepository(db).get(skip)
    (catch_up,) = await rows(db, "SELECT slot_time FROM runs WHERE job_id = :id", id=once)
    assert once_job.misfired_slots == 1 and once_job.last_fire_at == catch_up[0]
    assert skip_job.misfired_slots == 0 and skip_job.last_fire_at is None
    for job in (once_job, skip_job):
        recorded = await ScheduleRepository(db).list_skipped(job.id, None, 1000)
        assert job.skipped_slots == len(recorded) >= 30
        assert {r.reason for r in recorded} == {SkipReason.MISFIRED}
        assert [r.slot_time for r in recorded] == sorted((r.slot_time for r in recorded), reverse=True)
        fired = [r[0] for r in await rows(db, "SELECT slot_time FROM runs WHERE job_id = :id", id=job.id)]
        grid = {r.slot_time for r in recorded} | set(fired)
        assert job.next_fire_at is not None
        assert grid == {first + k * SECOND for k in range(int((job.next_fire_at - first) / SECOND))}
    # paging: newest first, continuing where the last page ended
    page = await ScheduleRepository(db).list_skipped(skip, None, 5)
    after = await ScheduleRepository(db).list_skipped(skip, Page(page[-1].slot_time, skip), 5)
    assert after[0].slot_time == page[-1].slot_time - SECOND


async def test_replace_cancels_active_runs_in_the_firing_transaction(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    job_id = await scheduled_job(db, {"interval": {"every": "60s"}, "overlapPolicy": "REPLACE"}, slot)
    runs = RunRepository(db)
    queued, running = await runs.create(
        [RunRequest(new_id(), job_id), RunRequest(new_id(), job_id)], Trigger.MANUAL
    )
    assert queued is not None and running is not None
    async with db.transaction() as conn:
        await conn.execute(Query("UPDATE runs SET state = 'RUNNING' WHERE id = :id"), {"id": running.id})
    _, fired = await ScheduleRepository(db).fire_due(10, deciding())
    assert {r.id: r.state for r in fired.cancelled} == {
        queued.id: RunState.CANCELLED,
        running.id: RunState.CANCELLING,
    }
    (new_run,) = fired.created
    assert new_run.state == RunState.QUEUED and new_run.slot_time == slot


async def test_forbid_records_the_active_run(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    job_id = await scheduled_job(db, {"interval": {"every": "60s"}, "overlapPolicy": "FORBID"}, slot)
    (active,) = await RunRepository(db).create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert active is not None
    _, fired = await ScheduleRepository(db).fire_due(10, deciding())
    assert fired.created == []
    (skipped,) = await ScheduleRepository(db).list_skipped(job_id, None, 10)
    assert (skipped.slot_time, skipped.reason, skipped.active_run_id) == (slot, SkipReason.OVERLAP, active.id)
    assert (await JobRepository(db).get(job_id)).next_fire_at == slot + timedelta(seconds=60)


async def test_a_slot_that_already_has_a_run_is_not_fired_again(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    job_id = await scheduled_job(db, {"interval": {"every": "60s"}}, slot)
    await ScheduleRepository(db).fire_due(10, deciding())
    # someone puts the job back on a slot that already fired (e.g. a clock running behind)
    async with db.transaction() as conn:
        await conn.execute(Query("UPDATE jobs SET next_fire_at = :s, due_at = :s"), {"s": slot})
    claimed, fired = await ScheduleRepository(db).fire_due(10, deciding())
    assert claimed == 1 and fired.created == [] and fired.conflicts == 1
    assert await rows(db, "SELECT count(*) FROM runs WHERE job_id = :id", id=job_id) == [(1,)]


async def test_a_slot_prepared_ahead_fires_no_earlier_than_its_slot(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) + 2 * SECOND
    allow = await scheduled_job(db, {"interval": {"every": "60s"}}, slot)
    forbid = await scheduled_job(db, {"interval": {"every": "60s"}, "overlapPolicy": "FORBID"}, slot)
    later = await scheduled_job(db, {"interval": {"every": "60s"}}, slot + SECOND)
    next_due = await ScheduleRepository(db).next_due()
    assert next_due is not None and next_due[0] == slot and 0 < next_due[1] <= 2
    claimed, fired = await ScheduleRepository(db).fire_ahead(10, slot, deciding())
    assert claimed == 1, "FORBID needs the runs active at the slot; a later slot is not due"
    (run,) = fired.created
    assert run.job_id == allow and run.slot_time == slot and run.queue_time >= slot
    assert (await JobRepository(db).get(allow)).next_fire_at == slot + timedelta(seconds=60)
    for job_id in (forbid, later):
        assert await rows(db, "SELECT count(*) FROM runs WHERE job_id = :id", id=job_id) == [(0,)]


async def test_a_prepared_batch_left_idle_too_long_is_ended_by_postgresql(db: Database) -> None:
    """A scheduler frozen while it holds a prepared batch (here: one prepared 4 s ahead, twice
    the idle timeout) loses its transaction, so the rows are free for the other schedulers."""
    slot = datetime.now(UTC) + 4 * SECOND
    job_id = await scheduled_job(db, {"interval": {"every": "60s"}}, slot)
    with pytest.raises(DatabaseUnavailable):
        await ScheduleRepository(db).fire_ahead(10, slot, deciding())
    assert await rows(db, "SELECT count(*) FROM runs WHERE job_id = :id", id=job_id) == [(0,)]
    unlocked = await rows(db, "SELECT id::text FROM jobs WHERE id = :id FOR NO KEY UPDATE NOWAIT", id=job_id)
    assert unlocked == [(job_id,)]


async def test_concurrent_claims_split_the_due_jobs(db: Database, firing_isolation: Isolation) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    job_ids = [await scheduled_job(db, {"interval": {"every": "60s"}}, slot) for _ in range(40)]
    engines = [Database(firing_isolation.database_url, pool_size=2) for _ in range(4)]
    try:
        results = await asyncio.gather(*(ScheduleRepository(e).fire_due(15, deciding()) for e in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(claimed for claimed, _ in results) == 40
    created = [run for _, fired in results for run in fired.created]
    assert sorted(r.job_id for r in created) == sorted(job_ids)
    assert sum(fired.conflicts for _, fired in results) == 0


async def test_firing_loops_share_a_grid_without_doubles_or_gaps(
    db: Database, firing_isolation: Isolation
) -> None:
    """Three firing loops (one engine each, as three schedulers) fire 30 per-second jobs for
    ~4 s: every job has exactly one run per slot from its first slot to its last."""
    start = datetime.now(UTC).replace(microsecond=0) + SECOND
    job_ids = [
        await scheduled_job(db, {"interval": {"every": "1s", "anchorTime": start.isoformat()}}, start)
        for _ in range(30)
    ]
    redis = connect_redis("redis://127.0.0.1:6379/0")
    engines = [Database(firing_isolation.database_url, pool_size=2) for _ in range(3)]
    registries = [CollectorRegistry() for _ in engines]
    loops = [
        ScheduleFiring(
            ScheduleRepository(engine),
            CacheWriter(StatusCache(redis, Names(firing_isolation.namespace), 60)),
            FiringMetrics(f"loop-{i}", registries[i]),
            asyncio.Event(),
            FiringConfig(batch_size=7, poll_interval=0.5, rules=RULES),
        )
        for i, engine in enumerate(engines)
    ]
    tasks = [asyncio.create_task(loop.run_forever()) for loop in loops]
    try:
        await asyncio.sleep((start - datetime.now(UTC)).total_seconds() + 4)
        async with db.transaction() as conn:
            await conn.execute(Query("UPDATE jobs SET paused = true"))
        # The pause waited for any batch a loop held prepared; let each loop record what it
        # committed before cancelling it (a cancel racing a commit's reply skips its metrics).
        (total,) = (await rows(db, "SELECT count(*) FROM runs"))[0]
        await eventually(lambda: _fired_count(registries) >= total, "the loops to record what they fired")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for engine in engines:
            await engine.dispose()
        await redis.aclose()
    fired = await rows(db, "SELECT job_id::text, slot_time FROM runs ORDER BY job_id, slot_time")
    by_job = {job: [slot for _, slot in group] for job, group in itertools.groupby(fired, key=lambda r: r[0])}
    assert set(by_job) == set(job_ids)
    for slots in by_job.values():
        assert slots == [start + k * SECOND for k in range(len(slots))], "one run per slot, none missing"
        assert len(slots) >= 3
    assert await rows(db, "SELECT count(*) FROM skipped_slots") == [(0,)]
    # no loop ever decided to fire a slot another one had fired (the constraint never stepped in)
    conflicts = [
        r.get_sample_value("taskmesh_schedule_slot_conflicts_total", {"scheduler": f"loop-{i}"})
        for i, r in enumerate(registries)
    ]
    assert conflicts == [0, 0, 0]
    assert _fired_count(registries) == len(fired)


def _fired_count(registries: list[CollectorRegistry]) -> float:
    """Slots fired, summed over the firing loops' metrics."""
    return sum(
        r.get_sample_value("taskmesh_schedule_fire_lag_seconds_count", {"scheduler": f"loop-{i}"}) or 0.0
        for i, r in enumerate(registries)
    )


async def test_a_scheduled_run_gets_the_jobs_default_parameters(db: Database) -> None:
    slot = datetime.now(UTC).replace(microsecond=0) - SECOND
    with_defaults = await scheduled_job(db, {"interval": {"every": "60s"}}, slot, parameters={"region": "eu"})
    without = await scheduled_job(db, {"interval": {"every": "60s"}}, slot)
    _, fired = await ScheduleRepository(db).fire_due(10, deciding())
    by_job = {run.job_id: run for run in fired.created}
    assert by_job[with_defaults].parameters == {"region": "eu"}
    assert by_job[without].parameters is None
