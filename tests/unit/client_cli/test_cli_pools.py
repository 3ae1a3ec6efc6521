"""`taskmesh workers list`, `taskmesh tasks schema` and the Python/pool job flags."""

from __future__ import annotations

import json

from taskmesh.client import TaskmeshClient, builders
from taskmesh.v1 import job_service_pb2
from tests.unit.client_cli.cli import run
from tests.unit.client_cli.fake import FakeTaskmesh
from tests.unit.client_cli.test_cli_jobspec import flags


def _worker(worker_id: str, pools: list[str]) -> job_service_pb2.Worker:
    return job_service_pb2.Worker(
        worker_id=worker_id, pools=pools, executors=["noop", "python"], tasks=["a", "b"], slots=4, busy_slots=1
    )


def test_workers_list_shows_pools_tasks_and_busy_slots(fake: FakeTaskmesh, cli_env: dict[str, str]) -> None:
    fake.state.workers = [_worker("w1", ["default"]), _worker("w2", ["gpu"])]
    table = run(["workers", "list"], cli_env)
    assert table.code == 0, table.err
    assert "WORKER" in table.out and "w1" in table.out and "1/4" in table.out and "noop,python" in table.out
    only_gpu = run(["workers", "list", "--pool", "gpu", "-o", "json"], cli_env)
    assert [w["workerId"] for w in json.loads(only_gpu.out)] == ["w2"]


def test_the_client_lists_workers_and_creates_pool_jobs(fake: FakeTaskmesh) -> None:
    fake.state.workers = [_worker("w1", ["default"])]
    with TaskmeshClient(fake.address, token=fake.token()) as client:
        assert [w.worker_id for w in client.list_workers()] == ["w1"]
        job = client.create_job("t", builders.python("reports.build"), pool="reports", start_deadline="10m")
    assert job.executor.python.task == "reports.build" and job.pool == "reports"
    assert job.start_deadline.seconds == 600


def test_job_flags_for_python_tasks_pools_and_start_deadlines() -> None:
    job, touched = flags("j", "--python", "reports.build", "--pool", "reports", "--start-deadline", "5m")
    assert job.executor.python.task == "reports.build" and job.pool == "reports"
    assert job.start_deadline.seconds == 300
    assert touched == {"name", "executor", "pool", "start_deadline"}


def test_tasks_schema_prints_the_parameter_schemas_without_a_server(cli_env: dict[str, str]) -> None:
    every = run(["tasks", "schema", "taskmesh.examples.tasks:tasks"], cli_env)
    assert every.code == 0, every.err
    schemas = json.loads(every.out)
    assert schemas["examples.greet"]["properties"]["times"]["maximum"] == 10
    one = run(["tasks", "schema", "taskmesh.examples.tasks:tasks", "--task", "examples.sum"], cli_env)
    assert json.loads(one.out)["required"] == ["numbers"]
    missing = run(["tasks", "schema", "taskmesh.examples.tasks:tasks", "--task", "nope"], cli_env)
    assert missing.code == 2 and "nope" in missing.error_line
    bad = run(["tasks", "schema", "no.such.module:tasks"], cli_env)
    assert bad.code == 2 and "no.such" in bad.error_line
