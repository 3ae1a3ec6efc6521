"""Parameters and outputs in the run statements (taskmesh.db.runs) and the trigger path
(api_server.runs) against the real PostgreSQL: stored with the run, guarded by the job's
version, idempotency conflicts, outputs written by the outcome statement."""

from typing import Any

import pytest

from api_server.runs import Runs
from scheduler.outcomes import AttemptEnding, resolve
from taskmesh.audit import AuditContext
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.pg import Database
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef, ClaimRequest, JobChanges, Replacement, RunRecord, RunRequest
from taskmesh.service_errors import AlreadyExists, InvalidArgument
from taskmesh.states import RunState, Trigger

pytestmark = pytest.mark.integration

SYSTEM = AuditContext.system("tests")

SCHEMA = {
    "type": "object",
    "properties": {"customer_id": {"type": "integer"}, "region": {"type": "string"}},
    "required": ["customer_id"],
}


class _NoCache:
    def enqueue(self, runs: Any) -> None:
        pass


async def _job(engine: Database, defaults: dict[str, Any] | None = None, schema: Any = SCHEMA) -> str:
    job = await JobRepository(engine).create(
        new_id(),
        f"params-{new_id()[-12:]}",
        "",
        {"noop": {}},
        {},
        parameters=defaults,
        parameter_schema=schema,
        audit=SYSTEM,
    )
    return job.id


def _runs(engine: Database) -> Runs:
    return Runs(JobRepository(engine), RunRepository(engine), LogRepository(engine), _NoCache())  # type: ignore[arg-type]


async def _claimed(runs: RunRepository, run: RunRecord) -> RunRecord:
    (claimed,) = await runs.claim([ClaimRequest(AttemptRef(run.id, run.attempt), "w1", "s1")], 30)
    assert claimed is not None
    return claimed.run


async def test_a_trigger_merges_the_defaults_validates_and_stores_the_parameters(engine: Database) -> None:
    job_id = await _job(engine, defaults={"region": "eu", "customer_id": 1})
    runs = _runs(engine)
    run = await runs.trigger(job_id, None, SYSTEM, {"customer_id": 42})
    assert run.parameters == {"region": "eu", "customer_id": 42}
    stored = await RunRepository(engine).get(run.id)
    assert stored.parameters == {"region": "eu", "customer_id": 42}
    claimed = await _claimed(RunRepository(engine), run)
    assert claimed.parameters == {"region": "eu", "customer_id": 42}


async def test_refused_parameters_name_the_json_path_and_create_nothing(engine: Database) -> None:
    job_id = await _job(engine)
    runs = _runs(engine)
    with pytest.raises(InvalidArgument, match=r"^parameters.customer_id: 'x' is not of type 'integer'"):
        await runs.trigger(job_id, None, SYSTEM, {"customer_id": "x"})
    with pytest.raises(InvalidArgument, match=r"^requests\[1\].parameters: 'customer_id' is a required"):
        await runs.trigger_many(
            [
                _input(job_id, {"customer_id": 1}, 0),
                _input(job_id, {"region": "eu"}, 1),
            ],
            SYSTEM,
        )
    assert await RunRepository(engine).list_page(job_id, [], None, 10) == []


def _input(job_id: str, parameters: dict[str, Any] | None, index: int, key: str | None = None) -> Any:
    from api_server.parameters import TriggerInput

    return TriggerInput(job_id, key, parameters, f"requests[{index}].parameters")


async def test_a_run_without_parameters_stores_null(engine: Database) -> None:
    job_id = await _job(engine, schema=None)
    run = await _runs(engine).trigger(job_id, None, SYSTEM, None)
    assert run.parameters is None


async def test_a_schema_changed_after_it_was_cached_is_the_one_a_trigger_meets(engine: Database) -> None:
    job_id = await _job(engine, schema=None)
    runs = _runs(engine)
    await runs.trigger(job_id, None, SYSTEM, {"customer_id": "x"})  # no schema yet: accepted, cached
    await JobRepository(engine).update(job_id, JobChanges(parameter_schema=Replacement(SCHEMA)), SYSTEM)
    with pytest.raises(InvalidArgument, match="customer_id"):
        await runs.trigger(job_id, None, SYSTEM, {"customer_id": "x"})
    batch = await runs.trigger_many([_input(job_id, {"customer_id": 5}, 0)], SYSTEM)
    assert batch[0].parameters == {"customer_id": 5}


async def test_a_version_guard_refuses_a_request_checked_against_an_older_job(engine: Database) -> None:
    job_id = await _job(engine, schema=None)
    stale = (await JobRepository(engine).get(job_id)).update_time
    await JobRepository(engine).update(job_id, JobChanges(description="changed"), SYSTEM)
    created = await RunRepository(engine).create(
        [RunRequest(new_id(), job_id, None, {"a": 1}, job_version=stale)], Trigger.MANUAL
    )
    assert created == [None]


async def test_the_same_key_returns_the_first_run_only_with_the_same_parameters(engine: Database) -> None:
    job_id = await _job(engine)
    runs = _runs(engine)
    first = await runs.trigger(job_id, "order-7", SYSTEM, {"customer_id": 7})
    again = await runs.trigger(job_id, "order-7", SYSTEM, {"customer_id": 7})
    assert again.id == first.id
    with pytest.raises(AlreadyExists, match=r"^idempotency_key: 'order-7' was first used with other parameters"):
        await runs.trigger(job_id, "order-7", SYSTEM, {"customer_id": 8})
    with pytest.raises(AlreadyExists, match=r"^requests\[0\].idempotency_key: 'order-7'"):
        await runs.trigger_many([_input(job_id, {"customer_id": 9}, 0, key="order-7")], SYSTEM)
    assert len(await RunRepository(engine).list_page(job_id, [], None, 10)) == 1


async def test_the_outcome_statement_writes_the_output_and_the_rendered_request(engine: Database) -> None:
    job_id = await _job(engine, schema=None)
    repository = RunRepository(engine)
    (run,) = await repository.create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert run is not None
    running = await _claimed(repository, run)
    rendered = {"shell": {"argv": ["echo", "42"], "env": {"TOKEN": "<redacted>"}}}
    ending = AttemptEnding(
        AttemptRef(running.id, 1), "w1", "s1", RunState.SUCCEEDED, None, None, '{"rows": 3}', rendered
    )
    (done,) = await repository.record_outcomes([resolve(ending, None)])
    assert done is not None and done.state == RunState.SUCCEEDED
    assert done.output == {"rows": 3}
    assert done.attempts[0]["output"] == {"rows": 3}
    assert done.attempts[0]["rendered"] == rendered
    stale = AttemptEnding(AttemptRef(running.id, 1), "w1", "s1", RunState.SUCCEEDED, None, None, '{"rows": 4}')
    assert await repository.record_outcomes([resolve(stale, None)]) == [None]  # recorded exactly once
    assert (await repository.get(run.id)).output == {"rows": 3}


async def test_an_attempt_without_output_leaves_none(engine: Database) -> None:
    job_id = await _job(engine, schema=None)
    repository = RunRepository(engine)
    (run,) = await repository.create([RunRequest(new_id(), job_id)], Trigger.MANUAL)
    assert run is not None
    await _claimed(repository, run)
    ending = AttemptEnding(AttemptRef(run.id, 1), "w1", "s1", RunState.SUCCEEDED, None, None)
    (done,) = await repository.record_outcomes([resolve(ending, None)])
    assert done is not None and done.output is None and "output" not in done.attempts[0]


async def test_validators_are_compiled_once_per_job_version(engine: Database) -> None:
    job_id = await _job(engine)
    runs = _runs(engine)
    resolver = runs._parameters
    for n in range(3):
        await runs.trigger(job_id, None, SYSTEM, {"customer_id": n})
    assert (resolver.loads, resolver.compiled) == (1, 1)
    await runs.trigger_many([_input(job_id, {"customer_id": 1}, 0)], SYSTEM)  # re-reads the job, same version
    assert resolver.compiled == 1
    await JobRepository(engine).update(job_id, JobChanges(description="new version"), SYSTEM)
    await runs.trigger(job_id, None, SYSTEM, {"customer_id": 1})
    assert resolver.compiled == 2


async def test_a_batch_naming_a_deleted_job_creates_nothing(engine: Database) -> None:
    from taskmesh.service_errors import NotFound

    kept, deleted = await _job(engine), await _job(engine)
    runs = _runs(engine)
    await runs.trigger(deleted, None, SYSTEM, {"customer_id": 1})  # cached
    await JobRepository(engine).delete(deleted, SYSTEM)
    with pytest.raises(NotFound):
        await runs.trigger_many(
            [_input(kept, {"customer_id": 1}, 0), _input(deleted, {"customer_id": 1}, 1)], SYSTEM
        )
    with pytest.raises(NotFound):
        await runs.trigger(deleted, None, SYSTEM, {"customer_id": 1})
    assert await RunRepository(engine).list_page(kept, [], None, 10) == []
