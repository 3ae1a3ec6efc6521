"""Retention against the real PostgreSQL: two sweepers at once purge exactly what
taskmesh.retention_policy says (iterated to its fixpoint: a replay's source goes in the sweep
after its replay), keep every job's latest run and live idempotency keys, and leave nothing
pointing at a purged run."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.maintenance import RetentionSettings, RetentionSweeper, SweepCounts
from taskmesh import retention_policy
from taskmesh.audit import AuditContext
from taskmesh.db.jobs import JobRepository
from taskmesh.db.pg import Database, Query
from taskmesh.db.run_purge import RunPurgeRepository
from taskmesh.db.runs import IDEMPOTENCY_WINDOW, RunRepository
from taskmesh.ids import new_id
from taskmesh.records import RunRequest
from taskmesh.retention_policy import Retention, RunFacts
from taskmesh.states import RunState, Trigger
from tests.support import Isolation

pytestmark = pytest.mark.integration

SYSTEM = AuditContext.system("tests")

DEFAULTS = Retention(
    succeeded=timedelta(days=7), failed=timedelta(days=30), cancelled=timedelta(days=30), logs=timedelta(days=7)
)
SETTINGS = RetentionSettings(
    defaults=DEFAULTS, skipped_slots=timedelta(days=30), batch_size=7, pause_seconds=0.0, interval_seconds=1.0
)
# Per job: its Retention override (protobuf JSON), None for the settings.
OVERRIDES: list[dict[str, str] | None] = [
    None,
    {"succeeded": "0s"},  # SUCCEEDED kept forever
    {"failed": "7200s", "logs": "0s"},  # FAILED 2h, lines kept forever
    {"succeeded": "3600s", "cancelled": "3600s"},  # 1h: younger than the idempotency window
]
STATES = (
    [RunState.SUCCEEDED] * 6
    + [RunState.FAILED] * 3
    + [RunState.CANCELLED] * 2
    + [
        RunState.QUEUED,
        RunState.RUNNING,
        RunState.RETRY_WAIT,
    ]
)


@dataclass(frozen=True)
class SeededRun:
    id: str
    job_id: str
    state: RunState
    queue_time: datetime
    finish_time: datetime | None
    key: str | None
    retried_from: str | None


@pytest.fixture
async def second_engine(integration_isolation: Isolation) -> AsyncIterator[Database]:
    engine = Database(integration_isolation.database_url, pool_size=2)
    yield engine
    await engine.dispose()


INSERT_RUN = Query(
    """
    INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time, start_time, finish_time,
                      idempotency_key, retried_from)
    VALUES (:id, :job_id, :state, 1, :trigger, '{"noop": {}}', :queue_time, :queue_time, :finish_time,
            :key, :retried_from)
    """
)
INSERT_LOG = Query(
    "INSERT INTO run_logs (id, run_id, attempt, time, text) VALUES (:id, :run_id, 1, :time, 'line')"
)
# The log sweep relies on ids growing with time (lines are stored as they arrive). The session's
# database also holds other tests' lines, all younger than the seeded history: each seed takes
# ids below every earlier one, as if it had been stored first.
_seeds = itertools.count(1)
INSERT_USAGE = Query("INSERT INTO attempt_log_usage (run_id, attempt, bytes) VALUES (:run_id, 1, 4)")
INSERT_OUTBOX = Query("INSERT INTO outbox (run_id, attempt) VALUES (:run_id, 1)")
INSERT_SKIPPED = Query(
    "INSERT INTO skipped_slots (job_id, slot_time, reason, record_time) VALUES (:job_id, :slot, 'OVERLAP', :slot)"
)


async def _seed(engine: Database, now: datetime) -> tuple[list[str], list[SeededRun]]:
    rng = random.Random(14)
    jobs = JobRepository(engine)
    job_ids = []
    for index, override in enumerate(OVERRIDES):
        job = await jobs.create(
            new_id(), f"retention-{index}-{new_id()[-12:]}", "", {"noop": {}}, {}, audit=SYSTEM
        )
        async with engine.statement() as conn:
            await conn.execute(
                Query("UPDATE jobs SET retention = CAST(:r AS jsonb) WHERE id = :id"),
                {"r": None if override is None else json.dumps(override), "id": job.id},
            )
        job_ids.append(job.id)
    runs: list[SeededRun] = []
    for job_id in job_ids:
        finished: list[SeededRun] = []
        for _ in range(45):
            state = rng.choice(STATES)
            # a third of the runs within the last 30 hours (idempotency window, 1h and 2h policies);
            # ages fall half an hour away from every boundary (whole hours), so the seconds the
            # test takes never move a run across one
            hours = rng.randrange(30) if rng.random() < 0.35 else rng.randrange(45 * 24)
            queue_time = now - timedelta(hours=hours, minutes=30)
            source = rng.choice(finished) if finished and rng.random() < 0.2 else None
            run = SeededRun(
                id=new_id(),
                job_id=job_id,
                state=state,
                queue_time=queue_time,
                finish_time=queue_time + timedelta(seconds=2) if state in retention_policy.FIELDS else None,
                key=f"key-{rng.randrange(10**9)}" if source is None and rng.random() < 0.3 else None,
                retried_from=source.id if source is not None and source.queue_time < queue_time else None,
            )
            runs.append(run)
            if run.finish_time is not None:
                finished.append(run)
    async with engine.transaction() as conn:
        for run in runs:
            trigger = Trigger.RETRY if run.retried_from else Trigger.MANUAL
            await conn.execute(
                INSERT_RUN,
                {
                    "id": run.id,
                    "job_id": run.job_id,
                    "state": run.state.value,
                    "trigger": trigger.value,
                    "queue_time": run.queue_time,
                    "finish_time": run.finish_time,
                    "key": run.key,
                    "retried_from": run.retried_from,
                },
            )
            await conn.execute(INSERT_USAGE, {"run_id": run.id})
            if rng.random() < 0.1:
                await conn.execute(INSERT_OUTBOX, {"run_id": run.id})
        lines = sorted(((t, run.id) for run in runs for t in _line_times(run, now)), key=lambda line: line[0])
        first_id = -next(_seeds) * 10**9
        for rank, (line_time, run_id) in enumerate(lines):
            await conn.execute(INSERT_LOG, {"id": first_id + rank, "run_id": run_id, "time": line_time})
        for job_id in job_ids:
            for age_days in (1, 29, 31, 40):
                await conn.execute(INSERT_SKIPPED, {"job_id": job_id, "slot": now - timedelta(days=age_days)})
    return job_ids, runs


def _line_times(run: SeededRun, now: datetime) -> tuple[datetime, datetime]:
    """Each run has a line as old as itself and one written a minute ago."""
    return run.queue_time + timedelta(seconds=1), now - timedelta(minutes=1)


def _policies(job_ids: list[str]) -> dict[str, Retention]:
    return {job_id: retention_policy.effective(DEFAULTS, o) for job_id, o in zip(job_ids, OVERRIDES, strict=True)}


def _expected_survivors(job_ids: list[str], runs: list[SeededRun], now: datetime) -> set[str]:
    """The pure rule, applied sweep after sweep until nothing more goes."""
    policies = _policies(job_ids)
    alive = {run.id: run for run in runs}
    while True:
        latest = {}
        for run in sorted(alive.values(), key=lambda r: (r.queue_time, r.id)):
            latest[run.job_id] = run.id
        replayed = {run.retried_from for run in alive.values() if run.retried_from}
        doomed = {
            run.id
            for run in alive.values()
            if retention_policy.run_is_purgeable(
                RunFacts(
                    state=run.state,
                    finish_time=run.finish_time,
                    queue_time=run.queue_time,
                    is_latest_of_job=latest[run.job_id] == run.id,
                    has_live_idempotency_key=run.key is not None and run.queue_time > now - IDEMPOTENCY_WINDOW,
                    is_replayed=run.id in replayed,
                ),
                policies[run.job_id],
                now,
            )
        }
        if not doomed:
            return set(alive)
        for run_id in doomed:
            del alive[run_id]


async def _sweep_to_fixpoint(engines: list[Database]) -> SweepCounts:
    sweepers = [RetentionSweeper(RunPurgeRepository(engine), SETTINGS) for engine in engines]
    total = SweepCounts()
    for _ in range(20):
        rounds = await asyncio.gather(*(sweeper.sweep() for sweeper in sweepers))
        purged = sum(c.runs + c.log_lines + c.skipped_slots for c in rounds)
        for counts in rounds:
            total = replace(
                total,
                runs=total.runs + counts.runs,
                log_lines=total.log_lines + counts.log_lines,
                skipped_slots=total.skipped_slots + counts.skipped_slots,
            )
        if purged == 0:
            return total
    raise AssertionError("retention never reached a state with nothing left to purge")


async def _rows(engine: Database, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
    async with engine.statement() as conn:
        return [tuple(row) for row in (await conn.execute(Query(sql), params)).all_rows()]


async def test_two_sweepers_purge_exactly_what_the_policy_says(engine: Database, second_engine: Database) -> None:
    now = datetime.now(UTC)
    job_ids, seeded = await _seed(engine, now)
    runs = RunRepository(engine)
    latest_before = {job_id: await runs.latest_for_job(job_id) for job_id in job_ids}
    expected = _expected_survivors(job_ids, seeded, now)
    assert 0 < len(expected) < len(seeded)  # the seed exercises both outcomes

    totals = await _sweep_to_fixpoint([engine, second_engine])

    remaining = {
        str(row[0])
        for row in await _rows(
            engine, "SELECT id::text FROM runs WHERE job_id = ANY(CAST(:ids AS uuid[]))", {"ids": job_ids}
        )
    }
    assert remaining == expected
    assert totals.runs >= len(seeded) - len(expected)  # each deleted once, by one sweeper or the other
    for job_id, latest in latest_before.items():
        after = await runs.latest_for_job(job_id)
        assert latest is not None and after is not None and after.id == latest.id
    # nothing points at a purged run (of this test's: the session's database is shared with
    # other modules, which may leave rows of their own behind)
    seeded_ids = [run.id for run in seeded]
    for table in ("run_logs", "attempt_log_usage", "outbox"):
        orphans = await _rows(
            engine,
            f"SELECT count(*) FROM {table} t WHERE t.run_id = ANY(CAST(:ids AS uuid[]))"
            " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.run_id)",
            {"ids": seeded_ids},
        )
        assert orphans == [(0,)], table
    dangling = await _rows(
        engine,
        "SELECT count(*) FROM runs b WHERE b.job_id = ANY(CAST(:jobs AS uuid[])) AND b.retried_from IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = b.retried_from)",
        {"jobs": job_ids},
    )
    assert dangling == [(0,)]


async def test_log_lines_and_skipped_slots_follow_their_own_retention(
    engine: Database, second_engine: Database
) -> None:
    now = datetime.now(UTC)
    job_ids, seeded = await _seed(engine, now)
    await _sweep_to_fixpoint([engine, second_engine])
    lines = await _rows(
        engine,
        "SELECT l.run_id::text, l.time, r.job_id::text FROM run_logs l JOIN runs r ON r.id = l.run_id"
        " WHERE r.job_id = ANY(CAST(:ids AS uuid[]))",
        {"ids": job_ids},
    )
    kept_runs = {
        str(row[0])
        for row in await _rows(
            engine, "SELECT id::text FROM runs WHERE job_id = ANY(CAST(:ids AS uuid[]))", {"ids": job_ids}
        )
    }
    policies = _policies(job_ids)
    line_counts: dict[str, int] = {}
    for run_id, _, _ in lines:
        line_counts[str(run_id)] = line_counts.get(str(run_id), 0) + 1
    for run in seeded:
        if run.id not in kept_runs:
            continue
        wanted = sum(
            not retention_policy.line_is_purgeable(run.state, line_time, policies[run.job_id], now)
            for line_time in _line_times(run, now)
        )
        assert line_counts.get(run.id, 0) == wanted, run
    slots = await _rows(
        engine,
        "SELECT job_id::text, record_time FROM skipped_slots WHERE job_id = ANY(CAST(:ids AS uuid[]))",
        {"ids": job_ids},
    )
    assert len(slots) == 2 * len(job_ids)  # 1 and 29 days old stay, 31 and 40 go
    assert all(isinstance(t, datetime) and t > now - timedelta(days=30) for _, t in slots)


async def test_a_live_idempotency_key_still_finds_its_run_after_purging(engine: Database) -> None:
    now = datetime.now(UTC)
    job = await JobRepository(engine).create(
        new_id(), f"retention-key-{new_id()[-12:]}", "", {"noop": {}}, {}, audit=SYSTEM
    )
    async with engine.statement() as conn:
        await conn.execute(
            Query("UPDATE jobs SET retention = CAST(:r AS jsonb) WHERE id = :id"),
            {"r": json.dumps({"succeeded": "3600s"}), "id": job.id},
        )
    runs = RunRepository(engine)
    keyed, unkeyed, latest = (
        SeededRun(
            new_id(), job.id, RunState.SUCCEEDED, now - timedelta(hours=h), now - timedelta(hours=h), k, None
        )
        for h, k in ((5, "order-42"), (4, None), (3, None))
    )
    async with engine.transaction() as conn:
        for run in (keyed, unkeyed, latest):
            await conn.execute(
                INSERT_RUN,
                {
                    "id": run.id,
                    "job_id": run.job_id,
                    "state": run.state.value,
                    "trigger": "MANUAL",
                    "queue_time": run.queue_time,
                    "finish_time": run.finish_time,
                    "key": run.key,
                    "retried_from": None,
                },
            )
    await _sweep_to_fixpoint([engine])
    remaining = {
        str(r[0]) for r in await _rows(engine, "SELECT id::text FROM runs WHERE job_id = :id", {"id": job.id})
    }
    assert remaining == {keyed.id, latest.id}
    (again,) = await runs.create([RunRequest(new_id(), job.id, "order-42")], Trigger.MANUAL)
    assert again is not None and again.id == keyed.id


async def test_the_sweeper_purges_audit_events_past_their_retention_in_batches(engine: Database) -> None:
    from taskmesh.db.audit import AuditRepository, purge_audit_events

    marker = f"audit-retention-{new_id()}"
    await AuditRepository(engine).record(
        [(AuditContext(actor=marker, role="ADMIN", method="/m", request_id="old"), "", "OK", None)] * 5
        + [(AuditContext(actor=marker, role="ADMIN", method="/m", request_id="new"), "", "OK", None)]
    )
    async with engine.statement() as conn:
        await conn.execute(
            Query(
                "UPDATE audit_events SET time = time - interval '400 days' WHERE actor = :a AND request_id = 'old'"
            ),
            {"a": marker},
        )
    limits: list[int] = []

    async def purge(before: datetime, limit: int) -> int:
        limits.append(limit)
        return await purge_audit_events(engine, before, limit)

    async def kept() -> list[str]:
        async with engine.statement() as conn:
            query = Query("SELECT request_id FROM audit_events WHERE actor = :a ORDER BY id")
            return [row.request_id for row in (await conn.execute(query, {"a": marker})).all_rows()]

    forever = Retention(None, None, None, None)
    # 0 days (None): audit events are kept, and the purge is never called.
    keep = RetentionSettings(forever, None, batch_size=2, pause_seconds=0.0, interval_seconds=1.0)
    assert (await RetentionSweeper(RunPurgeRepository(engine), keep, audit=purge).sweep()).audit_events == 0
    assert limits == [] and await kept() == ["old"] * 5 + ["new"]

    settings = replace(keep, audit_events=timedelta(days=365))
    counts = await RetentionSweeper(RunPurgeRepository(engine), settings, audit=purge).sweep()
    assert counts.audit_events >= 5 and len(limits) >= 3 and set(limits) == {2}
    assert await kept() == ["new"]
    # Without a purge function (a sweeper built before the audit log), nothing is touched.
    assert (await RetentionSweeper(RunPurgeRepository(engine), settings).sweep()).audit_events == 0
