"""Retries, leases, reaping, idempotency keys, replays and logs against the real PostgreSQL."""

import asyncio

import pytest

from scheduler.outcomes import AttemptEnding, resolve, resolve_expired
from taskmesh.audit import AuditContext
from taskmesh.db.logs import LogRepository
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef, ClaimRequest, LogEntry, RunRecord, RunRequest
from taskmesh.service_errors import FailedPrecondition
from taskmesh.states import RunState, Trigger

pytestmark = pytest.mark.integration

FAST_RETRY = {"maxAttempts": 3, "initialBackoff": "0.1s", "jitter": 0}
RETRYABLE_ERROR = {"kind": "EXECUTOR_FAILED", "message": "boom", "retryable": True}


async def _set_job_policy(engine: Database, job_id: str, policy: dict, timeout: float | None = None) -> None:
    import json

    async with engine.transaction() as conn:
        await conn.execute(
            Query("UPDATE jobs SET retry_policy = CAST(:p AS jsonb), attempt_timeout_seconds = :t WHERE id = :id"),
            {"p": json.dumps(policy), "t": timeout, "id": job_id},
        )


def _session(worker: str) -> str:
    """The session key a worker's stream would hold (any text stands for the hash here)."""
    return f"session-of-{worker}"


async def _running(runs: RunRepository, job_id: str, worker: str = "w1", lease: float = 30) -> RunRecord:
    (run,) = await runs.create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert run is not None
    (claimed,) = await runs.claim([ClaimRequest(AttemptRef(run.id, run.attempt), worker, _session(worker))], lease)
    assert claimed is not None
    return claimed.run


async def _fail(runs: RunRepository, run: RunRecord, worker: str = "w1") -> RunRecord | None:
    ending = AttemptEnding(
        AttemptRef(run.id, run.attempt), worker, _session(worker), RunState.FAILED, None, RETRYABLE_ERROR
    )
    policies = await runs.retry_policies([run.id])
    (recorded,) = await runs.record_outcomes([resolve(ending, policies[run.id])])
    return recorded


async def test_a_failed_attempt_waits_then_is_queued_again_as_the_next_attempt(
    engine: Database, job_id: str
) -> None:
    await _set_job_policy(engine, job_id, FAST_RETRY)
    runs = RunRepository(engine)
    run = await _running(runs, job_id)
    waiting = await _fail(runs, run)
    assert waiting is not None and waiting.state == RunState.RETRY_WAIT
    assert waiting.retry_at is not None and waiting.finish_time is None
    assert waiting.attempts[-1]["state"] == "FAILED" and waiting.attempts[-1]["error"]["message"] == "boom"
    assert run.id not in {r.id for r in await runs.promote_retries()}  # not due yet
    await asyncio.sleep(0.15)
    promoted = {r.id: r for r in await runs.promote_retries()}
    assert promoted[run.id].state == RunState.QUEUED and promoted[run.id].attempt == 2
    async with engine.statement() as conn:
        outbox = await conn.execute(
            Query("SELECT attempt FROM outbox WHERE run_id = :id ORDER BY id"), {"id": run.id}
        )
        assert [row.attempt for row in outbox] == [1, 2]
    # the old attempt can no longer be claimed or reported; the new one can
    assert await runs.claim([ClaimRequest(AttemptRef(run.id, 1), "w2", _session("w2"))], 30) == [None]
    (second,) = await runs.claim([ClaimRequest(AttemptRef(run.id, 2), "w2", _session("w2"))], 30)
    assert second is not None and second.run.worker_id == "w2"


async def test_the_last_attempt_fails_the_run(engine: Database, job_id: str) -> None:
    await _set_job_policy(engine, job_id, {"maxAttempts": 1})
    runs = RunRepository(engine)
    failed = await _fail(runs, await _running(runs, job_id))
    assert failed is not None and failed.state == RunState.FAILED and failed.finish_time is not None


async def test_heartbeats_extend_only_the_leases_a_worker_holds(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    mine = await _running(runs, job_id, "w1")
    theirs = await _running(runs, job_id, "w2")
    stale = AttemptRef(mine.id, 7)
    held = await runs.extend_leases(
        "w1", _session("w1"), [AttemptRef(mine.id, 1), AttemptRef(theirs.id, 1), stale], 30
    )
    assert held == {AttemptRef(mine.id, 1): RunState.RUNNING}
    await runs.cancel([mine.id], AuditContext.system("tests"))
    assert await runs.extend_leases("w1", _session("w1"), [AttemptRef(mine.id, 1)], 30) == {
        AttemptRef(mine.id, 1): RunState.CANCELLING
    }


async def test_a_heartbeat_does_not_revive_a_lease_that_ran_out(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    run = await _running(runs, job_id, "w1", lease=0.2)
    await asyncio.sleep(0.3)  # expired, and not reaped yet
    assert await runs.extend_leases("w1", _session("w1"), [AttemptRef(run.id, 1)], 30) == {}  # answered as lost


async def test_expired_leases_are_reaped_as_lost_and_retried(engine: Database, job_id: str) -> None:
    await _set_job_policy(engine, job_id, FAST_RETRY)
    runs = RunRepository(engine)
    lost = await _running(runs, job_id, "dead-worker", lease=0.05)
    cancelling = await _running(runs, job_id, "dead-worker", lease=0.05)
    await runs.cancel([cancelling.id], AuditContext.system("tests"))
    alive = await _running(runs, job_id, "live-worker", lease=30)
    await asyncio.sleep(0.1)
    reaped = {r.id: r for r in await runs.expire_attempts(resolve_expired, grace_seconds=60)}
    assert reaped[lost.id].state == RunState.RETRY_WAIT
    assert reaped[lost.id].attempts[-1]["error"]["kind"] == "LOST"
    assert reaped[cancelling.id].state == RunState.CANCELLED
    assert alive.id not in reaped
    # the vanished worker's late report loses the fencing race
    assert await _fail(runs, lost, "dead-worker") is None


async def test_attempts_overrunning_their_timeout_are_failed_by_the_server(engine: Database, job_id: str) -> None:
    await _set_job_policy(engine, job_id, {"maxAttempts": 1}, timeout=0.05)
    runs = RunRepository(engine)
    run = await _running(runs, job_id, lease=30)
    await asyncio.sleep(0.1)
    reaped = {r.id: r for r in await runs.expire_attempts(resolve_expired, grace_seconds=0)}
    assert reaped[run.id].state == RunState.FAILED
    assert reaped[run.id].error is not None and reaped[run.id].error["kind"] == "TIMEOUT"


async def test_idempotency_key_returns_the_first_run(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    key = f"order-{new_id()}"
    first = await runs.create(
        [RunRequest(new_id(), job_id, key), RunRequest(new_id(), job_id, key)], Trigger.MANUAL
    )
    again = await runs.create([RunRequest(new_id(), job_id, key)], Trigger.MANUAL)
    assert first[0] is not None and first[1] is not None and again[0] is not None
    assert first[0].id == first[1].id == again[0].id
    other = await runs.create([RunRequest(new_id(), job_id, "another-key")], Trigger.MANUAL)
    assert other[0] is not None and other[0].id != first[0].id


async def test_an_expired_idempotency_key_creates_a_new_run(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    (old,) = await runs.create([RunRequest(new_id(), job_id, "daily")], Trigger.MANUAL)
    assert old is not None
    async with engine.transaction() as conn:
        await conn.execute(
            Query("UPDATE runs SET queue_time = queue_time - interval '25 hours' WHERE id = :id"), {"id": old.id}
        )
    (fresh,) = await runs.create([RunRequest(new_id(), job_id, "daily")], Trigger.MANUAL)
    assert fresh is not None and fresh.id != old.id and fresh.idempotency_key == "daily"


async def test_retry_run_starts_a_fresh_run_from_a_finished_one(engine: Database, job_id: str) -> None:
    await _set_job_policy(engine, job_id, {"maxAttempts": 1})
    runs = RunRepository(engine)
    failed = await _fail(runs, await _running(runs, job_id))
    assert failed is not None
    replay = await runs.retry_run(failed.id, new_id(), AuditContext.system("tests"))
    assert replay.state == RunState.QUEUED and replay.attempt == 1
    assert replay.trigger == Trigger.RETRY and replay.retried_from == failed.id
    with pytest.raises(FailedPrecondition):
        await runs.retry_run(replay.id, new_id(), AuditContext.system("tests"))  # still active


async def test_logs_are_capped_per_attempt_and_only_from_the_holder(engine: Database, job_id: str) -> None:
    from datetime import UTC, datetime

    runs = RunRepository(engine)
    logs = LogRepository(engine, max_bytes_per_attempt=25)
    run = await _running(runs, job_id, "w1")
    ref = AttemptRef(run.id, 1)
    now = datetime.now(UTC)
    stored = await logs.append(
        "w1", _session("w1"), [LogEntry(ref, now, f"line {i:04d}") for i in range(5)]
    )  # 9 bytes each
    assert [e.text for e in stored] == ["line 0000", "line 0001"]
    assert await logs.append("intruder", _session("intruder"), [LogEntry(ref, now, "not mine")]) == []
    read = await logs.read(run.id, None)
    assert [e.text for e in read.lines] == ["line 0000", "line 0001"]
    assert read.truncated_attempts == [1]


async def test_only_the_claiming_session_reports_heartbeats_and_logs(engine: Database, job_id: str) -> None:
    """Another stream naming the same worker_id holds nothing: its outcome, heartbeat and log
    lines for the attempt are refused; the claiming session's are accepted."""
    from datetime import UTC, datetime

    runs = RunRepository(engine)
    logs = LogRepository(engine)
    run = await _running(runs, job_id, "w1")
    ref = AttemptRef(run.id, 1)
    forged = AttemptEnding(ref, "w1", "another-stream", RunState.SUCCEEDED, {"forged": True}, None)
    assert await runs.record_outcomes([resolve(forged, None)]) == [None]
    assert await runs.extend_leases("w1", "another-stream", [ref], 30) == {}
    assert await logs.append("w1", "another-stream", [LogEntry(ref, datetime.now(UTC), "injected")]) == []
    assert await runs.extend_leases("w1", _session("w1"), [ref], 30) == {ref: RunState.RUNNING}
    real = AttemptEnding(ref, "w1", _session("w1"), RunState.SUCCEEDED, None, None)
    (recorded,) = await runs.record_outcomes([resolve(real, None)])
    assert recorded is not None and recorded.state == RunState.SUCCEEDED
    assert (await logs.read(run.id, None)).lines == []


async def test_an_attempt_the_worker_truncated_is_marked_truncated_with_its_marker_kept(
    engine: Database, job_id: str
) -> None:
    from datetime import UTC, datetime

    runs = RunRepository(engine)
    logs = LogRepository(engine, max_bytes_per_attempt=1000)
    run = await _running(runs, job_id, "w1")
    ref = AttemptRef(run.id, 1)
    now = datetime.now(UTC)
    lines = [LogEntry(ref, now, "first"), LogEntry(ref, now, "[output truncated]")]
    assert await logs.append("w1", _session("w1"), lines[:1]) == lines[:1]
    assert (await logs.read(run.id, None)).truncated_attempts == []
    assert await logs.append("w1", _session("w1"), lines[1:], [ref]) == lines[1:]  # within the cap: kept
    assert await logs.append("intruder", _session("intruder"), [LogEntry(ref, now, "x")], [ref]) == []
    read = await logs.read(run.id, None)
    assert [e.text for e in read.lines] == ["first", "[output truncated]"]
    assert read.truncated_attempts == [1]
