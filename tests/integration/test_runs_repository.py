"""Run creation and guarded transitions against the real PostgreSQL."""

import json

import pytest

from taskmesh.audit import AuditContext
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef, ClaimRequest, OutcomeReport, RunRecord, RunRequest
from taskmesh.states import RunState, Trigger

pytestmark = pytest.mark.integration


async def _create(runs: RunRepository, job_id: str, count: int) -> list[RunRecord]:
    created = await runs.create([RunRequest(new_id(), job_id) for _ in range(count)], Trigger.MANUAL)
    assert all(run is not None for run in created)
    return [run for run in created if run is not None]


async def _outbox_rows(engine: Database, run_ids: list[str]) -> int:
    async with engine.statement() as conn:
        result = await conn.execute(
            Query("SELECT count(*) FROM outbox WHERE run_id = ANY(CAST(:ids AS uuid[]))"), {"ids": run_ids}
        )
        return int(result.one_value())


async def test_created_runs_come_with_their_outbox_rows(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    ids = [new_id() for _ in range(3)]
    created = [r for r in await runs.create([RunRequest(i, job_id) for i in ids], Trigger.MANUAL) if r]
    assert sorted(r.id for r in created) == sorted(ids)
    assert all(r.state == RunState.QUEUED and r.attempt == 1 for r in created)
    assert await _outbox_rows(engine, ids) == 3


async def test_unknown_jobs_create_nothing(engine: Database) -> None:
    run_id = new_id()
    created = await RunRepository(engine).create([RunRequest(run_id, new_id())], Trigger.MANUAL)
    assert created == [None]
    assert await _outbox_rows(engine, [run_id]) == 0


async def test_claim_is_fenced_by_state_and_attempt(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    (run,) = await _create(runs, job_id, 1)
    ref = AttemptRef(run.id, 1)
    # the same work unit delivered twice, to two workers, claimed in one batch: one wins
    results = await runs.claim(
        [ClaimRequest(ref, "w1", "s-w1"), ClaimRequest(ref, "w2", "s-w2")], lease_seconds=30
    )
    granted = [r for r in results if r is not None]
    assert len(granted) == 1
    assert granted[0].run.state == RunState.RUNNING
    assert json.loads(granted[0].executor_json) == {"noop": {}}
    # later duplicates and stale attempts lose too
    assert await runs.claim([ClaimRequest(ref, "w3", "s-w3")], 30) == [None]
    assert await runs.claim([ClaimRequest(AttemptRef(run.id, 2), "w3", "s-w3")], 30) == [None]
    assert await runs.claim([ClaimRequest(AttemptRef(new_id(), 1), "w3", "s-w3")], 30) == [None]


async def test_outcome_is_recorded_once_and_only_by_the_claiming_worker(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    (run,) = await _create(runs, job_id, 1)
    ref = AttemptRef(run.id, 1)
    (claimed,) = await runs.claim([ClaimRequest(ref, "w1", "s-w1")], 30)
    assert claimed is not None

    def report(worker: str, status: RunState) -> OutcomeReport:
        return OutcomeReport(ref, worker, f"s-{worker}", status, status, {"shell": {"exitCode": 0}}, None)

    assert await runs.record_outcomes([report("zombie", RunState.FAILED)]) == [None]
    (recorded,) = await runs.record_outcomes([report("w1", RunState.SUCCEEDED)])
    assert recorded is not None and recorded.state == RunState.SUCCEEDED
    assert recorded.finish_time is not None and recorded.start_time is not None
    assert recorded.version == run.version + 2
    assert await runs.record_outcomes([report("w1", RunState.FAILED)]) == [None]  # a duplicate report
    final = await runs.get(run.id)
    assert final.state == RunState.SUCCEEDED
    assert len(final.attempts) == 1
    assert final.attempts[0]["worker_id"] == "w1"
    assert final.attempts[0]["state"] == "SUCCEEDED"


async def test_latest_run_and_listing_newest_first(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    (first,) = await _create(runs, job_id, 1)
    (second,) = await _create(runs, job_id, 1)
    latest = await runs.latest_for_job(job_id)
    assert latest is not None and latest.id == second.id
    listed = await runs.list_page(job_id, [], None, 10)
    assert [r.id for r in listed[:2]] == [second.id, first.id]


async def test_cancel_ends_queued_runs_and_asks_running_ones_to_stop(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    queued, running, finished = await _create(runs, job_id, 3)
    await runs.claim(
        [
            ClaimRequest(AttemptRef(running.id, 1), "w1", "s-w1"),
            ClaimRequest(AttemptRef(finished.id, 1), "w1", "s-w1"),
        ],
        30,
    )
    ok = OutcomeReport(
        AttemptRef(finished.id, 1), "w1", "s-w1", RunState.SUCCEEDED, RunState.SUCCEEDED, None, None
    )
    await runs.record_outcomes([ok])

    cancelled = {
        r.id: r for r in await runs.cancel([queued.id, running.id, finished.id], AuditContext.system("tests"))
    }
    assert cancelled[queued.id].state == RunState.CANCELLED
    assert cancelled[queued.id].finish_time is not None
    assert cancelled[running.id].state == RunState.CANCELLING
    assert cancelled[running.id].finish_time is None
    assert finished.id not in cancelled  # finished runs are left alone
    # the queued run's work unit is dropped at claim time
    assert await runs.claim([ClaimRequest(AttemptRef(queued.id, 1), "w2", "s-w2")], 30) == [None]
    # the running attempt may still report; it ends as the worker says
    stopped = OutcomeReport(
        AttemptRef(running.id, 1), "w1", "s-w1", RunState.CANCELLED, RunState.CANCELLED, None, None
    )
    (recorded,) = await runs.record_outcomes([stopped])
    assert recorded is not None and recorded.state == RunState.CANCELLED
