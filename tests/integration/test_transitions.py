"""The lifecycle table checked against the database: a run is put in every state, every guarded
statement of taskmesh.db.runs is applied to it, and the edges that changed something must be
exactly taskmesh.states.ALLOWED_TRANSITIONS (each allowed edge reachable, every other refused)."""

import re
from collections.abc import Awaitable, Callable, Sequence

import psycopg
import pytest

from scheduler.outcomes import resolve_expired
from taskmesh.audit import AuditContext
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import RunRepository
from taskmesh.db.schedules import ScheduleRepository
from taskmesh.ids import new_id
from taskmesh.records import (
    AttemptRef,
    ClaimRequest,
    DueJob,
    ExpiredAttempt,
    FireDecision,
    FiredSlot,
    OutcomeReport,
    RunRecord,
    RunRequest,
)
from taskmesh.states import ACTIVE_STATES, ALLOWED_TRANSITIONS, LEASED_STATES, RunState, Trigger

pytestmark = pytest.mark.integration

WORKER, SESSION = "transitions-worker", "transitions-session"

Apply = Callable[[RunRepository, RunRecord], Awaitable[object]]


async def _put_in(engine: Database, runs: RunRepository, job_id: str, state: RunState) -> RunRecord:
    """A run of `job_id` in `state`, claimed by WORKER's SESSION, its lease run out and its retry
    due, so that every statement's guard is down to the state alone."""
    (run,) = await runs.create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert run is not None
    await runs.claim([ClaimRequest(AttemptRef(run.id, run.attempt), WORKER, SESSION)], lease_seconds=30)
    async with engine.statement() as conn:
        await conn.execute(
            Query(
                """UPDATE runs SET state = :state, lease_expires_at = clock_timestamp() - interval '1 minute',
                       retry_at = clock_timestamp() - interval '1 minute' WHERE id = :id"""
            ),
            {"state": state.value, "id": run.id},
        )
    return await runs.get(run.id)


def _outcome(new_state: RunState) -> Apply:
    async def apply(runs: RunRepository, run: RunRecord) -> object:
        delay = 0.0 if new_state == RunState.RETRY_WAIT else None
        report = OutcomeReport(
            AttemptRef(run.id, run.attempt), WORKER, SESSION, RunState.SUCCEEDED, new_state, None, None, delay
        )
        return await runs.record_outcomes([report])

    return apply


async def _claim(runs: RunRepository, run: RunRecord) -> object:
    return await runs.claim([ClaimRequest(AttemptRef(run.id, run.attempt), WORKER, SESSION)], 30)


async def _cancel(runs: RunRepository, run: RunRecord) -> object:
    return await runs.cancel([run.id], AuditContext.system("tests"))


async def _promote_due_retry(runs: RunRepository, run: RunRecord) -> object:
    return await runs.promote_retries()


async def _expire_lease(runs: RunRepository, run: RunRecord) -> object:
    return await runs.expire_attempts(resolve_expired, grace_seconds=0)


def _expire_into(new_state: RunState) -> Apply:
    """The reaper's statement with a decision that asks for `new_state` (for this run only)."""

    def decide(expired: ExpiredAttempt) -> OutcomeReport:
        ending = resolve_expired(expired)
        if expired.worker_id != WORKER:
            return ending
        return OutcomeReport(
            expired.ref, expired.worker_id, expired.session, ending.attempt_status, new_state, None, None, 0.0
        )

    async def apply(runs: RunRepository, run: RunRecord) -> object:
        return await runs.expire_attempts(decide, grace_seconds=0)

    return apply


async def _fail_not_started(runs: RunRepository, run: RunRecord) -> object:
    """The start-deadline sweep, with this run's deadline passed (whatever its state)."""
    async with runs._engine.statement() as conn:
        await conn.execute(
            Query("UPDATE runs SET start_deadline_at = clock_timestamp() - interval '1 minute' WHERE id = :id"),
            {"id": run.id},
        )
    return await runs.fail_not_started()


async def _heartbeat(runs: RunRepository, run: RunRecord) -> object:
    return await runs.extend_leases(WORKER, SESSION, [AttemptRef(run.id, run.attempt)], 30)


STATEMENTS: dict[str, Apply] = {
    "claim": _claim,
    "cancel": _cancel,
    "promote due retry": _promote_due_retry,
    "expire lease": _expire_lease,
    "heartbeat": _heartbeat,
    "fail not started": _fail_not_started,
    **{f"outcome -> {state.value}": _outcome(state) for state in RunState},
    **{f"expiry decided -> {state.value}": _expire_into(state) for state in RunState},
}


async def test_the_statements_take_exactly_the_allowed_edges(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    taken: dict[tuple[RunState, RunState], list[str]] = {}
    for name, apply in STATEMENTS.items():
        for source in RunState:
            run = await _put_in(engine, runs, job_id, source)
            await apply(runs, run)
            after = (await runs.get(run.id)).state
            if after != source:
                taken.setdefault((source, after), []).append(name)
            await _forget(engine, run.id)
    allowed = {(source, target) for source, targets in ALLOWED_TRANSITIONS.items() for target in targets}
    refused_yet_taken = {edge: names for edge, names in taken.items() if edge not in allowed}
    assert not refused_yet_taken, f"edges outside the lifecycle: {refused_yet_taken}"
    assert allowed - set(taken) == set(), "allowed edges no statement takes"


async def test_the_named_statements_take_the_edges_their_callers_rely_on(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)

    async def edge(apply: Apply, source: RunState) -> RunState:
        run = await _put_in(engine, runs, job_id, source)
        await apply(runs, run)
        state = (await runs.get(run.id)).state
        await _forget(engine, run.id)
        return state

    assert await edge(_claim, RunState.QUEUED) == RunState.RUNNING
    assert await edge(_outcome(RunState.SUCCEEDED), RunState.RUNNING) == RunState.SUCCEEDED
    assert await edge(_outcome(RunState.FAILED), RunState.RUNNING) == RunState.FAILED
    assert await edge(_outcome(RunState.RETRY_WAIT), RunState.RUNNING) == RunState.RETRY_WAIT
    assert await edge(_cancel, RunState.RUNNING) == RunState.CANCELLING
    assert await edge(_cancel, RunState.QUEUED) == RunState.CANCELLED
    assert await edge(_cancel, RunState.RETRY_WAIT) == RunState.CANCELLED
    assert await edge(_outcome(RunState.CANCELLED), RunState.CANCELLING) == RunState.CANCELLED  # cancel finished
    assert await edge(_promote_due_retry, RunState.RETRY_WAIT) == RunState.QUEUED
    assert await edge(_expire_lease, RunState.CANCELLING) == RunState.CANCELLED
    assert await edge(_expire_lease, RunState.RUNNING) in {RunState.RETRY_WAIT, RunState.FAILED}


async def test_every_run_entering_queued_gets_exactly_one_work_unit(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    (manual,) = await runs.create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert manual is not None
    finished = await _put_in(engine, runs, job_id, RunState.FAILED)
    replay = await runs.retry_run(finished.id, new_id(), AuditContext.system("tests"))
    waiting = await _put_in(engine, runs, job_id, RunState.RETRY_WAIT)
    await runs.promote_retries()
    promoted = await runs.get(waiting.id)
    scheduled = await _fire_one_slot(engine, job_id)
    queued = [manual, replay, promoted, scheduled]
    assert [run.state for run in queued] == [RunState.QUEUED] * 4
    assert (promoted.attempt, replay.trigger, scheduled.trigger) == (2, Trigger.RETRY, Trigger.SCHEDULE)
    async with engine.statement() as conn:
        rows = (
            await conn.execute(
                Query(
                    "SELECT run_id::text AS run_id, attempt FROM outbox WHERE run_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [run.id for run in queued]},
            )
        ).all_rows()
    expected = {(run.id, run.attempt) for run in queued}  # the promoted run's attempt 1 had its own
    assert sorted(key for row in rows if (key := (row.run_id, row.attempt)) in expected) == sorted(expected)


async def test_a_state_outside_the_enum_cannot_be_written(engine: Database, job_id: str) -> None:
    runs = RunRepository(engine)
    run = await _put_in(engine, runs, job_id, RunState.RUNNING)
    with pytest.raises(Exception) as raised:  # the driver error, whatever wraps it
        async with engine.statement() as conn:
            await conn.execute(Query("UPDATE runs SET state = 'PAUSED' WHERE id = :id"), {"id": run.id})
    assert _check_violation(raised.value) == "runs_state_valid"
    assert (await runs.get(run.id)).state == RunState.RUNNING


def _check_violation(error: BaseException | None) -> str | None:
    while error is not None:
        if isinstance(error, psycopg.errors.CheckViolation):
            return error.diag.constraint_name
        error = error.__cause__
    return None


async def _fire_one_slot(engine: Database, job_id: str) -> RunRecord:
    """The scheduler's firing statement creating one run of `job_id`."""
    async with engine.statement() as conn:
        await conn.execute(
            Query("UPDATE jobs SET next_fire_at = now(), due_at = now() - interval '1 second' WHERE id = :id"),
            {"id": job_id},
        )
    run_id = new_id()

    def decide(due: Sequence[DueJob]) -> list[FireDecision]:
        return [
            FireDecision(job.id, (FiredSlot(job.next_fire_at, run_id),), (), (), None, None, 0)
            for job in due
            if job.id == job_id
        ]

    _, fired = await ScheduleRepository(engine).fire_due(100, decide)
    (created,) = [run for run in fired.created if run.id == run_id]
    return created


async def _forget(engine: Database, run_id: str) -> None:
    """Drop a probed run, so that the global statements (promotion, expiry) of later cases and
    tests do not find it."""
    async with engine.statement() as conn:
        await conn.execute(Query("DELETE FROM runs WHERE id = :id"), {"id": run_id})
        await conn.execute(Query("DELETE FROM outbox WHERE run_id = :id"), {"id": run_id})


async def test_the_migrated_schema_lists_the_states_the_code_derives(engine: Database) -> None:
    """The CHECK and the partial indexes as migrated agree with taskmesh.states: a state added
    without its migration, or a set (active, leased) that changed without its index being
    rebuilt (the statements would then miss the index), fails here."""
    async with engine.statement() as conn:
        check = (
            await conn.execute(
                Query("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'runs_state_valid'")
            )
        ).one_value()
        rows = (
            await conn.execute(
                Query(
                    """SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS predicate
                       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                       WHERE i.indrelid = 'runs'::regclass AND i.indpred IS NOT NULL"""
                )
            )
        ).all_rows()
    predicates = {row.name: _named_states(row.predicate) for row in rows}
    assert _named_states(check) == set(RunState)
    assert predicates == {
        "runs_active_per_job": ACTIVE_STATES,
        "runs_leased": LEASED_STATES,
        "runs_retry_due": {RunState.RETRY_WAIT},
        "runs_retried_from": set(),  # retention (0012): replays by their source, no state in it
        "runs_finished": set(),  # notifications (0011): the scan of finished runs, no state in it
        "runs_start_deadline": {RunState.QUEUED},
        # flow control (migration 0010)
        "runs_awaiting_admission": {RunState.QUEUED},
        "runs_concurrency_active": ACTIVE_STATES,
        "runs_concurrency_waiting": {RunState.QUEUED},  # admission at trigger (0018)
    }


def _named_states(sql: str) -> set[RunState]:
    """The run states an SQL expression as PostgreSQL prints it names ('QUEUED'::text, ...)."""
    return {RunState(name) for name in re.findall(r"'([A-Z_]+)'", sql)}
