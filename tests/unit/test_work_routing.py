"""Work is routed by pool and capability: the names, bindings and waiting reasons that follow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from api_server.waiting import WorkerCapacity, waiting_reason
from taskmesh.names import EXECUTOR_KINDS, WORK_ROUTING_KEY, Names, Route, valid_pool_name, valid_task_name
from taskmesh.records import RunRecord, WorkerProfile
from taskmesh.states import RunState, Trigger
from taskmesh.v1 import job_pb2


def test_every_executor_kind_of_the_contract_is_routed() -> None:
    oneof = job_pb2.Executor.DESCRIPTOR.oneofs_by_name["kind"]
    assert set(EXECUTOR_KINDS) == {field.name for field in oneof.fields}


def test_optional_executors_have_queues_of_their_own() -> None:
    names = Names("ns")
    assert names.work_queues(["noop", "sleep", "http"]) == ["ns.runs"]
    assert names.work_queues(["http", "shell"]) == ["ns.runs", "ns.runs.shell"]
    assert names.work_bindings() == {
        "ns.runs": ["ns.runs", WORK_ROUTING_KEY, "noop", "sleep", "http"],
        "ns.runs.shell": ["ns.runs.shell", "shell"],
    }
    assert names.queue_for("shell") == "ns.runs.shell" and names.queue_for("http") == "ns.runs"


def test_each_pool_and_each_python_task_has_its_own_queue() -> None:
    names = Names("ns")
    assert names.queue_for("http", "gpu") == "ns.pool.gpu.runs"
    assert names.queue_for("shell", "gpu") == "ns.pool.gpu.runs.shell"
    assert names.queue_for("python", "gpu", "reports.build") == "ns.pool.gpu.runs.task.reports.build"
    assert names.queue_for("python", "default", "t") == "ns.runs.task.t"
    assert names.work_queues(["noop", "python"], ["default", "gpu"], ["b", "a"]) == [
        "ns.runs",
        "ns.runs.task.a",
        "ns.runs.task.b",
        "ns.pool.gpu.runs",
        "ns.pool.gpu.runs.task.a",
        "ns.pool.gpu.runs.task.b",
    ]
    # Tasks without the python executor consume nothing of theirs.
    assert names.work_queues(["noop"], ["default"], ["a"]) == ["ns.runs"]


def test_a_work_unit_of_unknown_kind_goes_to_the_main_queue() -> None:
    names = Names("ns")
    assert names.route_queue(Route("gpu", None, None)) == "ns.runs"
    assert names.route_queue(Route("gpu", "noop", None)) == "ns.pool.gpu.runs"


def test_pool_and_task_names_are_safe_in_queue_names() -> None:
    assert valid_pool_name("default") and valid_pool_name("gpu-a100_2")
    assert not any(valid_pool_name(n) for n in ("", "GPU", "a.b", "-x", "a" * 64, "a b", "a\x00"))
    assert valid_task_name("reports.build") and valid_task_name("_private-1")
    assert not any(valid_task_name(n) for n in ("", ".x", "-x", "a b", "a/b", "a" * 129, "é"))


SHELL_LESS = WorkerProfile(pools=("default",), executors=("http", "noop", "sleep"), slots=4)
PYTHON_GPU = WorkerProfile(pools=("gpu",), executors=("noop", "python"), tasks=("train",), slots=1)


def test_a_run_waits_with_a_reason_only_when_no_connected_worker_can_take_it() -> None:
    assert waiting_reason(Route("default", "shell"), [SHELL_LESS]) == (
        "NO_WORKER_FOR_EXECUTOR: no connected worker can run shell"
    )
    assert waiting_reason(Route("default", "http"), [SHELL_LESS]) == ""
    assert waiting_reason(Route("batch", "http"), [SHELL_LESS, PYTHON_GPU]) == (
        "NO_WORKER_FOR_POOL: no connected worker serves pool batch"
    )
    assert waiting_reason(Route("gpu", "python", "eval"), [PYTHON_GPU]) == (
        "NO_WORKER_FOR_TASK: no connected worker of pool gpu has task eval"
    )
    assert waiting_reason(Route("gpu", "python", "train"), [PYTHON_GPU]) == ""
    # Workers of the pool whose consumers are down (no broker) do not serve it.
    cut_off = WorkerProfile(pools=("batch",), executors=("http",), slots=2, consuming=False)
    assert waiting_reason(Route("batch", "http"), [cut_off]) == (
        "NO_WORKER_FOR_POOL: the workers of pool batch cannot reach RabbitMQ"
    )
    assert waiting_reason(Route("batch", "http"), [cut_off, replace(cut_off, consuming=True)]) == ""
    # A task known only to a worker of another pool does not help.
    assert waiting_reason(Route("default", "python", "train"), [SHELL_LESS, PYTHON_GPU]).startswith(
        "NO_WORKER_FOR_TASK"
    )


def _run(state: RunState, kind: str, pool: str = "default", task: str | None = None) -> RunRecord:
    return RunRecord(
        "r1", "j1", "job", state, 1, Trigger.MANUAL, 1, datetime.now(UTC), executor_kind=kind, pool=pool, task=task
    )


def test_capacity_explains_queued_runs_from_the_latest_roster_only() -> None:
    capacity = WorkerCapacity(max_age=60)
    assert capacity.reason(_run(RunState.QUEUED, "shell")) == ""  # nothing observed yet
    capacity.observe([SHELL_LESS])
    assert capacity.reason(_run(RunState.QUEUED, "shell")).startswith("NO_WORKER_FOR_EXECUTOR: ")
    assert capacity.reason(_run(RunState.QUEUED, "http")) == ""
    assert capacity.reason(_run(RunState.RUNNING, "shell")) == ""
    assert capacity.reason(_run(RunState.QUEUED, "python", "gpu", "train")).startswith("NO_WORKER_FOR_POOL: ")
    stale = WorkerCapacity(max_age=-1)
    stale.observe([SHELL_LESS])
    assert stale.reason(_run(RunState.QUEUED, "shell")) == ""
