"""The python executor for real (threads, child processes), without Taskmesh services."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import pytest
from pydantic import BaseModel

from taskmesh.egress import EgressPolicy
from taskmesh.tasks import NonRetryable, TaskContext, TaskRegistry
from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2
from worker.executors.base import ExecutionContext, ExecutionOutcome
from worker.executors.python import PythonExecutor, child_environment
from worker.executors.registry import ExecutorRegistry

SUCCEEDED = worker_service_pb2.Outcome.SUCCEEDED
FAILED = worker_service_pb2.Outcome.FAILED
REGISTRY_SPEC = "tests.unit.test_python_executor:tasks"

tasks = TaskRegistry()
started: dict[str, asyncio.Event | float] = {}


@tasks.task("hello")
async def hello(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    print("printed", params.get("who"))
    logging.getLogger("user.code").warning("logged")
    ctx.log("ctx line")
    return {"who": params.get("who"), "run": ctx.run_id}


@tasks.task("sync.hello")
def sync_hello(params: dict[str, Any]) -> str:
    print("from a thread")
    return "ok"


@tasks.task("boom")
def boom() -> None:
    raise ValueError("bad thing")


@tasks.task("never")
def never() -> None:
    raise NonRetryable("do not retry")


@tasks.task("async.wait")
async def async_wait(ctx: TaskContext) -> str:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        assert ctx.cancelled
        raise
    return "waited"


@tasks.task("sync.wait")
def sync_wait(ctx: TaskContext) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.01)
    return "stopped"


class Report(BaseModel):
    customer_id: int


@tasks.task("model")
def model(params: Report) -> int:
    return params.customer_id * 2


@tasks.task("not.json")
def not_json() -> object:
    return object()


@tasks.task("iso.hello", isolated=True)
def iso_hello(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    print("child says hi")
    ctx.log("child ctx line")
    secrets = sorted(k for k in os.environ if k.startswith("TASKMESH_") and k not in _IDENTITY)
    return {"pid": os.getpid(), "secrets": secrets, "who": params.get("who")}


@tasks.task("iso.boom", isolated=True)
def iso_boom() -> None:
    raise NonRetryable("child refuses")


@tasks.task("iso.spin", isolated=True)
def iso_spin() -> None:
    print(f"pid {os.getpid()}", flush=True)
    while True:
        pass


_IDENTITY = {"TASKMESH_RUN_ID", "TASKMESH_ATTEMPT", "TASKMESH_JOB_ID", "TASKMESH_JOB_NAME"}


class _Context:
    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.context = ExecutionContext(
            run_id="r-1",
            attempt=1,
            job_id="j-1",
            job_name="job",
            params=dict(params or {}),
            log=self.lines.append,
            kill_grace_seconds=0.3,
        )


def _spec(task: str) -> job_pb2.Executor:
    return job_pb2.Executor(python=job_pb2.PythonExecutor(task=task))


@pytest.fixture
def executor() -> PythonExecutor:
    return PythonExecutor(tasks, REGISTRY_SPEC, threads=4)


async def test_an_async_task_returns_its_output_and_its_print_and_logging_reach_the_run_log(
    executor: PythonExecutor,
) -> None:
    holder = _Context({"who": "Ada"})
    outcome = await executor.execute(_spec("hello"), holder.context)
    assert outcome.status == SUCCEEDED and outcome.output == {"who": "Ada", "run": "r-1"}
    assert outcome.result is not None and '"run":"r-1"' in outcome.result.python.return_excerpt
    assert "printed Ada" in holder.lines and "ctx line" in holder.lines
    assert "WARNING user.code: logged" in holder.lines


async def test_a_sync_task_runs_in_a_thread_with_its_output_captured(executor: PythonExecutor) -> None:
    holder = _Context()
    outcome = await executor.execute(_spec("sync.hello"), holder.context)
    assert outcome.status == SUCCEEDED and holder.lines == ["from a thread"]


async def test_an_exception_fails_the_attempt_with_type_message_and_traceback(executor: PythonExecutor) -> None:
    holder = _Context()
    outcome = await executor.execute(_spec("boom"), holder.context)
    assert outcome.status == FAILED and outcome.error is not None and outcome.result is not None
    assert outcome.error.retryable and outcome.error.message == "ValueError: bad thing"
    assert outcome.result.python.exception_type == "ValueError"
    assert "in boom" in outcome.result.python.traceback and len(outcome.result.python.traceback) <= 4096
    assert any("ValueError: bad thing" in line for line in holder.lines)  # the traceback is in the log too


async def test_non_retryable_and_unserializable_results_fail_without_retry(executor: PythonExecutor) -> None:
    for task, message in (("never", "NonRetryable: do not retry"), ("not.json", "not JSON")):
        outcome = await executor.execute(_spec(task), _Context().context)
        assert outcome.status == FAILED and outcome.error is not None
        assert not outcome.error.retryable and message in outcome.error.message


async def test_parameters_are_validated_into_the_model_and_a_bad_one_fails_without_retry(
    executor: PythonExecutor,
) -> None:
    good = await executor.execute(_spec("model"), _Context({"customer_id": 21}).context)
    assert good.status == SUCCEEDED and good.output == 42
    bad = await executor.execute(_spec("model"), _Context({"customer_id": "x"}).context)
    assert bad.status == FAILED and bad.error is not None and not bad.error.retryable
    assert bad.error.message.startswith("parameters.customer_id: ")
    none = await executor.execute(_spec("sync.hello"), _Context().context)
    assert none.output == "ok"


async def test_an_unknown_task_is_unsupported_here(executor: PythonExecutor) -> None:
    outcome = await executor.execute(_spec("nobody.knows"), _Context().context)
    assert outcome.error is not None and outcome.error.kind == run_pb2.RunError.UNSUPPORTED


async def _cancel_after_start(executor: PythonExecutor, task: str) -> tuple[float, asyncio.Task[ExecutionOutcome]]:
    running = asyncio.create_task(executor.execute(_spec(task), _Context().context))
    await asyncio.sleep(0.2)
    started_at = time.monotonic()
    running.cancel()
    return started_at, running


async def test_cancel_stops_an_async_task_at_its_next_await(executor: PythonExecutor) -> None:
    started_at, running = await _cancel_after_start(executor, "async.wait")
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - started_at < 5


async def test_cancel_reaches_a_sync_task_through_ctx_cancelled(executor: PythonExecutor) -> None:
    started_at, running = await _cancel_after_start(executor, "sync.wait")
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - started_at < 5


async def test_an_isolated_task_runs_in_a_child_without_the_workers_secrets(
    executor: PythonExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMESH_WORKER_PASSWORD", "hunter2")
    monkeypatch.setenv("TASKMESH_AMQP_URL", "amqp://secret@localhost")
    holder = _Context()
    holder = _Context({"who": "child"})
    outcome = await executor.execute(_spec("iso.hello"), holder.context)
    assert outcome.status == SUCCEEDED, outcome
    assert outcome.output["who"] == "child" and outcome.output["secrets"] == []
    assert outcome.result is not None
    excerpt = outcome.result.python.return_excerpt
    assert f'"pid":{os.getpid()}' not in excerpt and '"secrets":[]' in excerpt
    assert "child says hi" in holder.lines and "child ctx line" in holder.lines
    env = child_environment(holder.context)
    assert "TASKMESH_WORKER_PASSWORD" not in env and "TASKMESH_AMQP_URL" not in env


async def test_an_isolated_task_fails_like_an_in_process_one(executor: PythonExecutor) -> None:
    outcome = await executor.execute(_spec("iso.boom"), _Context().context)
    assert outcome.status == FAILED and outcome.error is not None and not outcome.error.retryable
    assert outcome.error.message == "NonRetryable: child refuses"


async def test_cancel_or_timeout_kills_an_isolated_child_that_ignores_them(executor: PythonExecutor) -> None:
    """A cancel and the attempt's timeout (time_limit) both cancel the executor: the child's
    process group is killed and reaped. (The e2e tests time one out through the mesh.)"""
    holder = _Context()
    running = asyncio.create_task(executor.execute(_spec("iso.spin"), holder.context))
    while not any(line.startswith("pid ") for line in holder.lines):  # however slow the child's start
        assert not running.done(), holder.lines
        await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    pids = [int(line.split()[1]) for line in holder.lines if line.startswith("pid ")]
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pids[0], 0)


def test_the_registry_offers_python_and_its_tasks_only_when_given_one() -> None:
    plain = ExecutorRegistry(False, egress=EgressPolicy())
    assert "python" not in plain.kinds and plain.tasks == []
    with_tasks = ExecutorRegistry(False, egress=EgressPolicy(), python=PythonExecutor(tasks, REGISTRY_SPEC))
    assert "python" in with_tasks.kinds and "hello" in with_tasks.tasks
    assert sys.executable
