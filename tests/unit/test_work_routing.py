"""Work is routed by executor kind: the names, bindings and waiting reasons that follow."""

from __future__ import annotations

from datetime import UTC, datetime

from api_server.waiting import WorkerCapacity, waiting_reason
from taskmesh.broker.probe import QueueDepth
from taskmesh.names import EXECUTOR_KINDS, WORK_ROUTING_KEY, Names, routing_key
from taskmesh.records import RunRecord
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
        "ns.runs": [WORK_ROUTING_KEY, "noop", "sleep", "http"],
        "ns.runs.shell": ["shell"],
    }
    assert names.queue_for("shell") == "ns.runs.shell" and names.queue_for("http") == "ns.runs"


def test_a_work_unit_of_unknown_kind_goes_to_the_main_queue() -> None:
    assert routing_key("shell") == "shell"
    assert routing_key(None) == WORK_ROUTING_KEY and routing_key("python") == WORK_ROUTING_KEY


def test_a_run_waits_with_a_reason_only_when_nobody_consumes_its_queue() -> None:
    assert waiting_reason("shell", 0) == "no connected worker can run shell"
    assert waiting_reason("shell", 2) == ""
    assert waiting_reason("shell", None) == ""  # not sampled: no claim either way


def _run(state: RunState, kind: str) -> RunRecord:
    return RunRecord("r1", "j1", "job", state, 1, Trigger.MANUAL, 1, datetime.now(UTC), executor_kind=kind)


def test_capacity_explains_queued_runs_from_the_latest_sample_only() -> None:
    capacity = WorkerCapacity(Names("ns"), max_age=60)
    assert capacity.reason(_run(RunState.QUEUED, "shell")) == ""  # nothing sampled yet
    capacity.observe({"ns.runs": QueueDepth(0, 1), "ns.runs.shell": QueueDepth(3, 0)})
    assert capacity.reason(_run(RunState.QUEUED, "shell")) == "no connected worker can run shell"
    assert capacity.reason(_run(RunState.QUEUED, "http")) == ""
    assert capacity.reason(_run(RunState.RUNNING, "shell")) == ""
    stale = WorkerCapacity(Names("ns"), max_age=-1)
    stale.observe({"ns.runs.shell": QueueDepth(3, 0)})
    assert stale.reason(_run(RunState.QUEUED, "shell")) == ""
