"""Flow control against the real PostgreSQL: admission (concurrency slots, rate windows, SKIP,
CANCEL_OLDEST, round-robin, freed slots on every end, job deletion) and the relay's priority
order and in-flight bound."""

import asyncio
from typing import Any

import pytest

from api_server.parameters import ParameterResolver, TriggerInput
from api_server.runs import Runs
from taskmesh.audit import AuditContext
from taskmesh.db.admission import AdmissionRepository
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.outbox import OutboxRepository
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import MAX_KEY_LOCKS, RunRepository, trigger_key_locks
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef, ClaimRequest, FlowSettings, OutcomeReport, RunRecord, RunRequest
from taskmesh.states import RunState, Trigger
from tests.support import Isolation

pytestmark = pytest.mark.integration

SYSTEM = AuditContext.system("tests")


async def _job(engine: Database, concurrency: Any = None, rate_limit: Any = None, priority: int = 5) -> str:
    flow = FlowSettings(priority=priority, concurrency=concurrency, rate_limit=rate_limit)
    job = await JobRepository(engine).create(
        new_id(), f"flow-{new_id()[-12:]}", "", {"noop": {}}, {}, flow=flow, audit=SYSTEM
    )
    return job.id


async def _job_with(engine: Database, executor: dict[str, Any], concurrency: Any = None) -> str:
    job = await JobRepository(engine).create(
        new_id(),
        f"flow-{new_id()[-12:]}",
        "",
        executor,
        {},
        flow=FlowSettings(concurrency=concurrency),
        audit=SYSTEM,
    )
    return job.id


async def _create(engine: Database, job_id: str, count: int, priority: int | None = None) -> list[RunRecord]:
    """One statement per run, so that their order is their creation order (FIFO)."""
    runs = []
    for _ in range(count):
        (run,) = await RunRepository(engine).create(
            [RunRequest(new_id(), job_id, None, priority=priority)], Trigger.MANUAL
        )
        assert run is not None
        runs.append(run)
    return runs


async def _value(engine: Database, sql: str, **params: Any) -> Any:
    async with engine.statement() as conn:
        return (await conn.execute(Query(sql), params)).one_value()


async def _outbox(engine: Database, runs: list[RunRecord]) -> int:
    return int(
        await _value(
            engine,
            "SELECT count(*) FROM outbox WHERE run_id = ANY(CAST(:ids AS uuid[]))",
            ids=[r.id for r in runs],
        )
    )


async def _state(engine: Database, run_id: str) -> RunState:
    return RunState(await _value(engine, "SELECT state FROM runs WHERE id = :id", id=run_id))


async def _finish(engine: Database, run: RunRecord, state: RunState = RunState.SUCCEEDED) -> None:
    runs = RunRepository(engine)
    (claimed,) = await runs.claim([ClaimRequest(AttemptRef(run.id, run.attempt), "w", "s")], 30)
    assert claimed is not None
    report = OutcomeReport(AttemptRef(run.id, run.attempt), "w", "s", state, state, None, None, 0.0)
    assert (await runs.record_outcomes([report]))[0] is not None


@pytest.fixture
async def clean(engine: Database) -> None:
    """Admission is global to the database: start each test without others' waiting runs."""
    async with engine.statement() as conn:
        await conn.execute(Query("DELETE FROM jobs"))
        await conn.execute(Query("DELETE FROM outbox"))
        await conn.execute(Query("DELETE FROM rate_limit_grants"))


async def test_runs_without_limits_keep_the_fast_path(engine: Database, clean: None) -> None:
    job_id = await _job(engine, priority=7)
    runs = await _create(engine, job_id, 3)
    assert all(not r.awaiting_admission and r.priority == 7 for r in runs)
    assert await _outbox(engine, runs) == 3
    (override,) = await _create(engine, job_id, 1, priority=0)
    assert override.priority == 0


async def test_a_key_admits_up_to_its_limit_and_a_freed_slot_admits_the_next(
    engine: Database, clean: None
) -> None:
    job_id = await _job(engine, concurrency={"key": "export", "limit": 2})
    runs = await _create(engine, job_id, 5)
    assert all(r.awaiting_admission for r in runs)
    assert await _outbox(engine, runs) == 0
    admission = AdmissionRepository(engine)
    first = await admission.admit()
    assert sorted(r.id for r in first.admitted) == sorted(r.id for r in runs[:2])  # FIFO within the key
    assert {r.concurrency_key for r in first.admitted} == {"export"}
    assert (await admission.admit()).admitted == []
    reasons = await admission.waiting_reasons([runs[2].id])
    assert reasons[runs[2].id] == "CONCURRENCY_LIMIT: key export has 2 of 2 active"
    await _finish(engine, first.admitted[0], RunState.FAILED)
    assert [r.id for r in (await admission.admit()).admitted] == [runs[2].id]
    keys = await admission.list_keys("", "", 10)
    assert [(k.key, k.active, k.waiting, k.limit) for k in keys] == [("export", 2, 2, 2)]


async def test_a_pass_with_nothing_awaiting_admission_is_idle(engine: Database, clean: None) -> None:
    admission = AdmissionRepository(engine)
    assert (await admission.admit()).idle
    job_id = await _job(engine, concurrency={"key": "idle", "limit": 1})
    runs = await _create(engine, job_id, 2)
    first = await admission.admit()
    assert not first.idle and [r.id for r in first.admitted] == [runs[0].id]
    assert not (await admission.admit()).idle  # runs[1] still waits for the slot
    await _finish(engine, first.admitted[0], RunState.SUCCEEDED)
    assert [r.id for r in (await admission.admit()).admitted] == [runs[1].id]
    assert (await admission.admit()).idle


async def test_cancelling_a_queued_admitted_run_frees_its_slot(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "k", "limit": 1})
    runs = await _create(engine, job_id, 2)
    admission = AdmissionRepository(engine)
    assert len((await admission.admit()).admitted) == 1
    await RunRepository(engine).cancel([runs[0].id], SYSTEM)
    assert [r.id for r in (await admission.admit()).admitted] == [runs[1].id]


async def test_keys_take_turns(engine: Database, clean: None) -> None:
    busy = await _job(engine, concurrency={"key": "busy", "limit": 100})
    quiet = await _job(engine, concurrency={"key": "quiet", "limit": 100})
    await _create(engine, busy, 10)
    (lone,) = await _create(engine, quiet, 1)
    admitted = (await AdmissionRepository(engine).admit(limit=2)).admitted
    assert {r.concurrency_key for r in admitted} == {"busy", "quiet"}
    assert lone.id in {r.id for r in admitted}


async def test_priority_orders_a_key_and_the_outbox(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "p", "limit": 1})
    low = await _create(engine, job_id, 2, priority=1)
    (high,) = await _create(engine, job_id, 1, priority=9)
    (admitted,) = (await AdmissionRepository(engine).admit()).admitted
    assert admitted.id == high.id
    free = await _job(engine)
    await _create(engine, free, 3, priority=0)
    (urgent,) = await _create(engine, free, 1, priority=8)
    batch = await OutboxRepository(engine).take(2)
    assert [u.run_id for u in batch.units] == [high.id, urgent.id]
    assert low  # still waiting for the slot


async def test_a_take_leaves_out_the_routes_of_full_queues(engine: Database, clean: None) -> None:
    noop = await _job(engine)
    shell = await _job_with(engine, {"shell": {"command": "true"}})
    await _create(engine, noop, 3, priority=9)  # ahead of everything, but their queue is full
    low = await _create(engine, shell, 3, priority=0)
    outbox = OutboxRepository(engine)
    first = await outbox.take(2, excluded=["default noop "])
    assert [u.run_id for u in first.units] == [r.id for r in low[:2]]  # FIFO within the route
    assert first.route_texts == ["default shell ", "default shell "]
    assert [r.kind for r in first.routes] == ["shell", "shell"]
    everything = await outbox.take(10)
    assert {r.kind for r in everything.routes} == {"noop", "shell"}  # nothing left out: all the rest
    assert len(everything.units) == 4
    assert (await outbox.take(10, excluded=["default shell "])).units == []  # leased meanwhile


async def test_outbox_rows_carry_their_route(engine: Database, clean: None) -> None:
    task = await _job_with(engine, {"python": {"task": "reports.build"}})
    admitted = await _job_with(engine, {"noop": {}}, concurrency={"key": "r", "limit": 5})
    await _create(engine, task, 1)
    await _create(engine, admitted, 1)
    await AdmissionRepository(engine).admit()
    routes = sorted((await OutboxRepository(engine).take(10)).route_texts)
    assert routes == ["default noop ", "default python reports.build"]


async def test_skip_ends_the_run_when_the_key_is_full(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "s", "limit": 1, "onLimit": "SKIP"})
    runs = await _create(engine, job_id, 2)
    result = await AdmissionRepository(engine).admit()
    assert [r.id for r in result.admitted] == [runs[0].id]
    (skipped,) = result.ended
    assert skipped.id == runs[1].id and skipped.state == RunState.CANCELLED
    assert skipped.error is not None and skipped.error["kind"] == "NOT_ADMITTED"
    assert skipped.error["message"].startswith("SKIPPED: key s has 1 of 1 active")


async def test_cancel_oldest_takes_the_oldest_runs_slot(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "c", "limit": 1, "onLimit": "CANCEL_OLDEST"})
    (old,) = await _create(engine, job_id, 1)
    admission = AdmissionRepository(engine)
    assert len((await admission.admit()).admitted) == 1
    (new,) = await _create(engine, job_id, 1)
    result = await admission.admit()
    assert [r.id for r in result.ended] == [old.id]
    assert [r.id for r in result.admitted] == [new.id]
    assert await _state(engine, old.id) == RunState.CANCELLED


async def test_a_running_oldest_is_asked_to_stop_once(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "c2", "limit": 1, "onLimit": "CANCEL_OLDEST"})
    admission = AdmissionRepository(engine)
    (old,) = await _create(engine, job_id, 1)
    assert len((await admission.admit()).admitted) == 1
    await RunRepository(engine).claim([ClaimRequest(AttemptRef(old.id, 1), "w", "s")], 30)
    await _create(engine, job_id, 1)
    first = await admission.admit()
    assert first.admitted == [] and [r.state for r in first.ended] == [RunState.CANCELLING]
    second = await admission.admit()
    assert second.admitted == [] and second.ended == []  # the slot frees when the worker stops


async def test_rate_limit_admits_at_most_the_limit_per_window(engine: Database, clean: None) -> None:
    job_id = await _job(engine, rate_limit={"key": "api", "limit": 3, "period": "60s"})
    runs = await _create(engine, job_id, 5)
    admission = AdmissionRepository(engine)
    assert len((await admission.admit()).admitted) == 3
    assert (await admission.admit()).admitted == []
    assert await admission.rate_limited_waiting()
    reason = (await admission.waiting_reasons([runs[4].id]))[runs[4].id]
    assert reason == "RATE_LIMITED: key api admitted 3 of 3 runs in the last 60s"
    # a window that has passed gives its tokens back
    async with engine.statement() as conn:
        await conn.execute(Query("UPDATE rate_limit_grants SET grant_time = grant_time - interval '61 seconds'"))
    assert len((await admission.admit()).admitted) == 2


async def test_a_rate_limited_retry_waits_for_a_token_again(engine: Database, clean: None) -> None:
    job_id = await _job(engine, rate_limit={"key": "r", "limit": 1, "period": "60s"})
    (run,) = await _create(engine, job_id, 1)
    admission = AdmissionRepository(engine)
    (admitted,) = (await admission.admit()).admitted
    await _finish(engine, admitted, RunState.RETRY_WAIT)
    async with engine.statement() as conn:
        await conn.execute(
            Query("UPDATE runs SET retry_at = now() - interval '1 second' WHERE id = :id"), {"id": run.id}
        )
        await conn.execute(Query("DELETE FROM outbox WHERE run_id = :id"), {"id": run.id})  # as a relay would
    (promoted,) = await RunRepository(engine).promote_retries()
    assert promoted.awaiting_admission and await _outbox(engine, [run]) == 0
    assert (await admission.admit()).admitted == []


async def test_deleting_a_job_frees_the_slots_its_runs_held(engine: Database, clean: None) -> None:
    first = await _job(engine, concurrency={"key": "shared", "limit": 1})
    second = await _job(engine, concurrency={"key": "shared", "limit": 1})
    await _create(engine, first, 1)
    (waiting,) = await _create(engine, second, 1)
    admission = AdmissionRepository(engine)
    assert len((await admission.admit()).admitted) == 1
    assert (await admission.admit()).admitted == []
    await JobRepository(engine).delete(first, SYSTEM)
    assert [r.id for r in (await admission.admit()).admitted] == [waiting.id]


async def test_a_key_template_renders_over_job_and_run(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "job-{{ job.name }}", "limit": 1})
    (run,) = await _create(engine, job_id, 1)
    (admitted,) = (await AdmissionRepository(engine).admit()).admitted
    assert admitted.concurrency_key == f"job-{run.job_name}"
    broken = await _job(engine, concurrency={"key": "{{ params.customer_id }}", "limit": 1})
    (failing,) = await _create(engine, broken, 1)
    (ended,) = (await AdmissionRepository(engine).admit()).ended
    assert ended.id == failing.id and ended.state == RunState.CANCELLED
    assert ended.error is not None and "concurrency.key" in ended.error["message"]


async def test_concurrent_passes_never_exceed_a_limit(
    engine: Database, clean: None, integration_isolation: Isolation
) -> None:
    jobs = [await _job(engine, concurrency={"key": f"key-{i}", "limit": 2}) for i in range(5)]
    for job_id in jobs:
        await _create(engine, job_id, 6)
    others = [Database(integration_isolation.database_url, pool_size=2) for _ in range(3)]
    try:
        await asyncio.gather(
            *(AdmissionRepository(db).admit(limit=3) for db in [engine, *others] for _ in range(3))
        )
    finally:
        for db in others:
            await db.dispose()
    counts = await _per_key_admitted(engine)
    assert counts and max(counts.values()) <= 2 and set(counts.values()) == {2}


async def _per_key_admitted(engine: Database) -> dict[str, int]:
    async with engine.statement() as conn:
        rows = (
            await conn.execute(
                Query(
                    "SELECT concurrency_key AS k, count(*) AS n FROM runs WHERE NOT awaiting_admission "
                    "AND concurrency_key IS NOT NULL AND state = 'QUEUED' GROUP BY 1"
                )
            )
        ).all_rows()
    return {row.k: int(row.n) for row in rows}


async def test_a_key_renders_over_the_runs_parameters(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "customer-{{ params.customer_id }}", "limit": 1})
    runs = RunRepository(engine)
    for customer in (7, 7, 8):
        created = await runs.create(
            [RunRequest(new_id(), job_id, parameters={"customer_id": customer})], Trigger.MANUAL
        )
        assert created[0] is not None
    admitted = (await AdmissionRepository(engine).admit()).admitted
    assert sorted(r.concurrency_key or "" for r in admitted) == ["customer-7", "customer-8"]


async def test_an_admitted_run_held_in_the_outbox_says_how_many_runs_are_ahead(
    engine: Database, clean: None
) -> None:
    job_id = await _job(engine)
    early, late = await _create(engine, job_id, 2, priority=1)
    (urgent,) = await _create(engine, job_id, 1, priority=9)
    admission = AdmissionRepository(engine)
    reasons = await admission.dispatch_reasons([early.id, late.id, urgent.id])
    assert (
        reasons[urgent.id]
        == "DISPATCH_BOUND: waiting in the outbox for room in its queue, behind 0 runs of its route"
    )
    assert reasons[late.id].endswith("behind 2 runs of its route")  # the urgent one and the earlier one
    outbox = OutboxRepository(engine)
    taken = await outbox.take(1)
    assert [u.run_id for u in taken.units] == [urgent.id]
    assert urgent.id not in await admission.dispatch_reasons([urgent.id])  # a relay is publishing it
    await outbox.published(taken)
    assert await admission.dispatch_reasons([urgent.id]) == {}  # out in RabbitMQ
    assert (await admission.dispatch_reasons([late.id]))[late.id].endswith("behind 1 runs of its route")


async def _trigger(
    engine: Database, job_id: str, count: int, resolver: ParameterResolver | None = None
) -> list[RunRecord]:
    """`count` runs in one statement, with their keys rendered at trigger as the api_server
    renders them (admission at trigger)."""
    resolver = resolver or ParameterResolver(JobRepository(engine))
    requests = await resolver.requests([TriggerInput(job_id, None, None)] * count)
    assert all(r.flow_keys is not None for r in requests)
    runs = await RunRepository(engine).create(requests, Trigger.MANUAL)
    assert all(run is not None for run in runs)
    return [run for run in runs if run is not None]


async def test_a_trigger_admits_at_once_what_its_key_has_room_for(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "t-{{ job.name }}", "limit": 2})
    runs = await _trigger(engine, job_id, 3)
    assert [r.awaiting_admission for r in runs] == [False, False, True]
    assert await _outbox(engine, runs[:2]) == 2 and await _outbox(engine, runs[2:]) == 0
    assert {r.concurrency_key for r in runs} == {f"t-{runs[0].job_name}"}
    admission = AdmissionRepository(engine)
    assert (await admission.admit()).admitted == []  # the key is full
    assert (await admission.waiting_reasons([runs[2].id]))[runs[2].id].endswith("has 2 of 2 active")
    await _finish(engine, runs[0])
    assert [r.id for r in (await admission.admit()).admitted] == [runs[2].id]


async def test_a_trigger_waits_behind_the_runs_that_wait_for_its_key(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "fifo", "limit": 1})
    first, second = await _trigger(engine, job_id, 2)
    await _finish(engine, first)  # the key has room, but `second` waits for the next pass
    (third,) = await _trigger(engine, job_id, 1)
    assert third.awaiting_admission
    assert [r.id for r in (await AdmissionRepository(engine).admit()).admitted] == [second.id]


async def test_skip_at_trigger_answers_with_the_run_ended(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "s-now", "limit": 1, "onLimit": "SKIP"})
    admitted, skipped = await _trigger(engine, job_id, 2)
    assert admitted.state == RunState.QUEUED and not admitted.awaiting_admission
    assert skipped.state == RunState.CANCELLED and skipped.finish_time is not None
    assert skipped.error == {
        "kind": "NOT_ADMITTED",
        "message": "SKIPPED: key s-now has 1 of 1 active (on_limit SKIP)",
        "retryable": False,
    }
    assert await _outbox(engine, [skipped]) == 0
    assert (await AdmissionRepository(engine).admit()).idle


async def test_concurrent_triggers_of_a_key_never_admit_past_its_limit(
    engine: Database, integration_isolation: Isolation, clean: None
) -> None:
    """Triggers through two engines (as two api_servers), all at once, a pass among them."""
    job_id = await _job(engine, concurrency={"key": "race", "limit": 3})
    other = Database(integration_isolation.database_url, pool_size=4)
    try:
        resolvers = [ParameterResolver(JobRepository(e)) for e in (engine, other)]
        engines = [engine, other]
        batches = await asyncio.gather(
            *(_trigger(engines[i % 2], job_id, 2, resolvers[i % 2]) for i in range(16)),
            AdmissionRepository(other).admit(),
        )
    finally:
        await other.dispose()
    runs = [run for batch in batches[:-1] for run in batch]  # type: ignore[union-attr]
    assert sum(not r.awaiting_admission for r in runs) == 3
    active = await _value(
        engine,
        "SELECT count(*) FROM runs WHERE concurrency_key = 'race' AND NOT awaiting_admission AND state = 'QUEUED'",
    )
    assert active == 3
    assert (await AdmissionRepository(engine).admit()).admitted == []


async def test_a_call_of_many_keys_and_triggers_of_one_of_them_exclude_each_other(
    engine: Database, integration_isolation: Isolation, clean: None
) -> None:
    """A call with more keys than it locks one by one (its buckets instead), at once with calls
    of one of its keys (that key's lock): the key still admits one run."""
    job_id = await _job(engine, concurrency={"key": "m-{{ params.k }}", "limit": 1})
    many = [TriggerInput(job_id, None, {"k": str(i)}) for i in range(MAX_KEY_LOCKS + 1)]
    other = Database(integration_isolation.database_url, pool_size=4)
    try:
        resolvers = [ParameterResolver(JobRepository(e)) for e in (engine, other)]

        async def call(resolver: ParameterResolver, e: Database, inputs: list[TriggerInput]) -> None:
            await RunRepository(e).create(await resolver.requests(inputs), Trigger.MANUAL)

        await asyncio.gather(
            call(resolvers[0], engine, [*many, TriggerInput(job_id, None, {"k": "0"})]),
            *(
                call(resolvers[i % 2], (engine, other)[i % 2], [TriggerInput(job_id, None, {"k": "0"})])
                for i in range(6)
            ),
        )
    finally:
        await other.dispose()
    active = await _value(
        engine,
        "SELECT count(*) FROM runs WHERE concurrency_key = 'm-0' AND NOT awaiting_admission AND state = 'QUEUED'",
    )
    waiting = await _value(
        engine, "SELECT count(*) FROM runs WHERE concurrency_key = 'm-0' AND awaiting_admission"
    )
    assert (active, waiting) == (1, 7)
    assert trigger_key_locks({f"m-{i}" for i in range(MAX_KEY_LOCKS + 1)})["keys"] == []  # the buckets, then


class _Observed:
    """api_server.runs.RunsObserver, recording; and a cache writer that keeps nothing."""

    def __init__(self) -> None:
        self.skipped_ids: list[str] = []

    def cancelled(self, runs: Any) -> None:
        pass

    def skipped(self, runs: list[RunRecord]) -> None:
        self.skipped_ids += [run.id for run in runs]

    def enqueue(self, runs: Any) -> None:
        pass


async def test_a_trigger_reports_the_runs_it_skipped_once(engine: Database, clean: None) -> None:
    job_id = await _job(engine, concurrency={"key": "seen", "limit": 1, "onLimit": "SKIP"})
    observed = _Observed()
    runs = Runs(
        JobRepository(engine),
        RunRepository(engine),
        LogRepository(engine),
        observed,
        observers=[observed],  # type: ignore[arg-type]
    )
    admitted = await runs.trigger(job_id, "a", SYSTEM)
    skipped = await runs.trigger(job_id, "b", SYSTEM)
    assert admitted.state == RunState.QUEUED and skipped.state == RunState.CANCELLED
    again = await runs.trigger(job_id, "b", SYSTEM)  # the key's earlier run: not skipped again
    [in_batch] = await runs.trigger_many([TriggerInput(job_id, "b", None)], SYSTEM)
    assert again.id == in_batch.id == skipped.id
    assert observed.skipped_ids == [skipped.id]
