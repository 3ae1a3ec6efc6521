"""python: calls a task of the worker's registry (taskmesh.tasks) with the run's parameters.

- async tasks run on the worker's event loop, in a task of their own: a cancel (or the
  attempt's timeout) sets ctx.cancelled and raises CancelledError at their next await;
- sync tasks run in a bounded thread pool: a cancel sets ctx.cancelled, which they read; the
  attempt ends CANCELLED once the function returns, or after the kill grace (a thread cannot be
  stopped from outside: tasks that ignore ctx.cancelled belong in process isolation);
- isolated tasks (`@tasks.task(..., isolated=True)`) run each attempt in a child process
  (worker.executors.python_child) with a minimal environment that never holds the worker's
  settings or credentials; on cancel or timeout its process group is SIGTERMed, then SIGKILLed.

print(), logging and ctx.log() go to the run's log (worker.executors.python_capture). The
parameters are validated into the task's model first: a bad parameter fails the attempt
without retry, naming the field. NonRetryable fails it without retry; any other exception
fails it with its type, message and the last frames of its traceback, and the job's retry
policy decides. The return value, as JSON, is the run's output (ExecutionOutcome.output: the
pipeline bounds it and the scheduler records it with the outcome), its first 4 KiB also
`result.python.return_excerpt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from taskmesh.tasks import NonRetryable, ParameterError, TaskContext, TaskDefinition, TaskRegistry
from taskmesh.tasks.results import json_value
from taskmesh.v1 import job_pb2, run_pb2
from worker.executors import python_capture
from worker.executors.base import (
    EXCERPT_BYTES,
    NO_OUTPUT,
    ExecutionContext,
    ExecutionOutcome,
    failed,
    succeeded,
)
from worker.executors.environment import process_environment
from worker.executors.shell import stop_process_group

MAX_TRACEBACK_CHARS = 4096
MAX_CHILD_LINE_BYTES = 64 * 1024


class PythonExecutor:
    kind = "python"

    def __init__(self, registry: TaskRegistry, registry_spec: str = "", threads: int = 8) -> None:
        self.registry = registry
        self._spec = registry_spec  # module:attribute, for isolated children to load
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task")
        python_capture.install()

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        task = self.registry.get(spec.python.task)
        if task is None:  # routing keeps this from happening; a stale registry might not
            return failed(
                f"this worker's task registry has no task {spec.python.task!r}",
                retryable=True,  # another worker of the pool may know it
                kind=run_pb2.RunError.UNSUPPORTED,
            )
        ctx = TaskContext(
            run_id=context.run_id,
            attempt=context.attempt,
            job_id=context.job_id,
            job_name=context.job_name,
            idempotency_key=context.idempotency_key,
            params=dict(context.params),
            secrets=dict(context.secrets),
            _sink=context.log,
        )
        context.ensure_lease()  # the last moment before the effect starts
        if task.isolated:
            return await self._run_isolated(task, ctx, context)
        python_capture.install()
        buffer = python_capture.capturing(context.log)
        try:
            value = await (
                self._run_async(task, ctx, buffer) if task.is_async else self._run_sync(task, ctx, buffer, context)
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return task_failure(error, context)
        finally:
            buffer.flush()
        return task_success(value)

    async def _run_async(self, task: TaskDefinition, ctx: TaskContext, buffer: Any) -> Any:
        def start() -> asyncio.Task[Any]:
            python_capture.current_sink.set(buffer)
            return asyncio.ensure_future(task.function(**task.arguments(ctx.params, ctx)))

        running = contextvars.copy_context().run(start)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            ctx.cancel()
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
            raise

    async def _run_sync(
        self, task: TaskDefinition, ctx: TaskContext, buffer: Any, context: ExecutionContext
    ) -> Any:
        def call() -> Any:
            python_capture.current_sink.set(buffer)
            return task.function(**task.arguments(ctx.params, ctx))

        running = asyncio.get_running_loop().run_in_executor(self._threads, contextvars.copy_context().run, call)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            ctx.cancel()  # cooperative: the function reads ctx.cancelled
            await asyncio.wait({running}, timeout=context.kill_grace_seconds)
            raise

    async def _run_isolated(
        self, task: TaskDefinition, ctx: TaskContext, context: ExecutionContext
    ) -> ExecutionOutcome:
        with tempfile.TemporaryDirectory(prefix="taskmesh-task-") as folder:
            result_path = Path(folder) / "result.json"
            request = {
                "registry": self._spec,
                "task": task.name,
                "params": dict(ctx.params),
                "secrets": dict(ctx.secrets),  # over the child's stdin, never its environment
                "context": {
                    "run_id": ctx.run_id,
                    "attempt": ctx.attempt,
                    "job_id": ctx.job_id,
                    "job_name": ctx.job_name,
                    "idempotency_key": ctx.idempotency_key,
                },
                "result_path": str(result_path),
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker.executors.python_child",
                env=child_environment(context),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                limit=MAX_CHILD_LINE_BYTES,
            )
            try:
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(json.dumps(request).encode())
                process.stdin.close()
                await _child_output(process, context)
                exit_code = await process.wait()
            except asyncio.CancelledError:  # cancelled, or the attempt's timeout fired
                await stop_process_group(process, context.kill_grace_seconds)
                raise
            return _child_outcome(result_path, exit_code)


async def _child_output(process: asyncio.subprocess.Process, context: ExecutionContext) -> None:
    assert process.stdout is not None
    while True:
        try:
            line = await process.stdout.readline()
        except ValueError:  # a line over the limit: take what is there
            line = await process.stdout.read(MAX_CHILD_LINE_BYTES)
        if not line:
            return
        if not context.log_full():
            context.log(line.decode("utf-8", errors="replace").rstrip("\n"))


def _child_outcome(result_path: Path, exit_code: int) -> ExecutionOutcome:
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        return failed(f"the task's process exited with code {exit_code} before it returned")
    if result.get("ok"):
        return task_success(result.get("value"))
    python = run_pb2.PythonResult(
        exception_type=str(result.get("type", "")),
        traceback=str(result.get("traceback", ""))[-MAX_TRACEBACK_CHARS:],
    )
    return failed(
        str(result.get("message", "")),
        retryable=bool(result.get("retryable", True)),
        result=run_pb2.RunResult(python=python),
    )


def child_environment(context: ExecutionContext, worker_env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """An isolated task's environment: what a shell job gets (never the worker's settings or
    credentials), plus the Python path that finds the worker's task registry."""
    identity = {
        "TASKMESH_RUN_ID": context.run_id,
        "TASKMESH_ATTEMPT": str(context.attempt),
        "TASKMESH_JOB_ID": context.job_id,
        "TASKMESH_JOB_NAME": context.job_name,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "PYTHONUNBUFFERED": "1",
    }
    return process_environment(identity, {}, worker_env)


def task_success(value: Any) -> ExecutionOutcome:
    try:
        output = json_value(value)
    except (TypeError, ValueError) as error:
        return failed(f"the task's return value is not JSON: {error}", retryable=False)
    text = "" if output is None else json.dumps(output, separators=(",", ":"))
    excerpt = text.encode()[:EXCERPT_BYTES].decode("utf-8", errors="ignore")
    result = run_pb2.RunResult(python=run_pb2.PythonResult(return_excerpt=excerpt))
    # The run's output (the pipeline bounds it: taskmesh.limits.MAX_OUTPUT_BYTES); a task that
    # returned None has none.
    return succeeded(result, output=NO_OUTPUT if value is None else output)


def task_failure(error: BaseException, context: ExecutionContext | None = None) -> ExecutionOutcome:
    """The attempt's failure: type and message, and the last frames of the traceback."""
    kind = type(error).__qualname__
    message = f"{kind}: {error}" if str(error) else kind
    if isinstance(error, ParameterError):  # names the field: parameters.customer_id: ...
        message = str(error)
    frames = "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]
    if context is not None and not isinstance(error, NonRetryable):
        for line in frames.splitlines():
            context.log(line)
    python = run_pb2.PythonResult(exception_type=kind, traceback=frames)
    return failed(message, retryable=not isinstance(error, NonRetryable), result=run_pb2.RunResult(python=python))
