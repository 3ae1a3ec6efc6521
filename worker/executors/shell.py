"""shell: runs argv directly (never through a shell), in its own process group.

Disabled unless the worker starts with TASKMESH_WORKER_SHELL_ENABLED=true. Output lines are
streamed to the run's log as they come (cut at MAX_LOG_LINE_BYTES); once the attempt's output
reached its cap the rest is still read, so that the process never blocks, but discarded. On cancellation or timeout the whole process group
gets SIGTERM, then SIGKILL after a grace period. The process sees TASKMESH_RUN_ID,
TASKMESH_ATTEMPT, TASKMESH_JOB_ID and TASKMESH_JOB_NAME, to make its effect idempotent, in a
minimal environment that is never the worker's (worker.executors.environment), and
TASKMESH_IDEMPOTENCY_KEY (the same for every attempt of the run).

$TASKMESH_OUTPUT names an empty file in a private directory (mode 0700) of this attempt, removed
when the attempt ends: the JSON the process writes there becomes the attempt's output (nothing
written: no output). JSON that does not parse, or is over MAX_OUTPUT_BYTES, fails an attempt
whose process exited 0, for good; a failed process's output is kept when it parses. The spec
arrives rendered (worker.layers.render): argv elements and env values one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile

from taskmesh.limits import MAX_LOG_LINE_BYTES, MAX_OUTPUT_BYTES
from taskmesh.v1 import job_pb2, run_pb2
from worker.executors.base import (
    EXCERPT_BYTES,
    NO_OUTPUT,
    ExecutionContext,
    ExecutionOutcome,
    JsonValue,
    failed,
    succeeded,
    tail_excerpt,
)
from worker.executors.environment import process_environment
from worker.output import LineSplitter

MAX_LINE_BYTES = MAX_LOG_LINE_BYTES
READ_BYTES = 64 * 1024
OUTPUT_VARIABLE = "TASKMESH_OUTPUT"


class ShellExecutor:
    kind = "shell"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        if not self.enabled:
            return failed(
                "shell execution is disabled on this worker (TASKMESH_WORKER_SHELL_ENABLED=false)",
                retryable=False,
                kind=run_pb2.RunError.UNSUPPORTED,
            )
        with tempfile.TemporaryDirectory(prefix="taskmesh-output-") as directory:
            output_file = os.path.join(directory, "output.json")
            os.close(os.open(output_file, os.O_CREAT | os.O_WRONLY, 0o600))
            return await self._run(spec.shell, context, output_file)

    async def _run(
        self, shell: job_pb2.ShellExecutor, context: ExecutionContext, output_file: str
    ) -> ExecutionOutcome:
        env = process_environment(_identity(context), dict(shell.env))
        env[OUTPUT_VARIABLE] = output_file
        context.ensure_lease()  # the last moment before the effect starts
        try:
            process = await asyncio.create_subprocess_exec(
                *shell.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return failed(f"cannot start {shell.argv[0]!r}: {error.strerror or error}", retryable=False)
        timeout = shell.timeout.ToTimedelta().total_seconds() if shell.HasField("timeout") else None
        try:
            async with asyncio.timeout(timeout):
                output = await _stream_output(process, context)
                exit_code = await process.wait()
        except TimeoutError:
            await stop_process_group(process, context.kill_grace_seconds)
            return failed(f"timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except asyncio.CancelledError:  # cancelled, or the attempt timeout around us fired
            await stop_process_group(process, context.kill_grace_seconds)
            raise
        result = run_pb2.RunResult(
            shell=run_pb2.ShellResult(exit_code=exit_code, output_excerpt=tail_excerpt(output))
        )
        value, problem = read_output(output_file)
        if exit_code == 0:
            if problem is not None:
                return failed(problem, retryable=False, result=result)
            return succeeded(result, output=value)
        return failed(
            f"exited with code {exit_code}", result=result, output=value if problem is None else NO_OUTPUT
        )


def read_output(path: str) -> tuple[JsonValue, str | None]:
    """(the JSON value the process wrote, None), (NO_OUTPUT, None) when it wrote nothing, or
    (NO_OUTPUT, what is wrong)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_OUTPUT_BYTES + 1)
    except OSError as error:  # the process removed or replaced it
        return NO_OUTPUT, f"cannot read ${OUTPUT_VARIABLE}: {error.strerror or error}"
    if len(data) > MAX_OUTPUT_BYTES:
        return (
            NO_OUTPUT,
            f"${OUTPUT_VARIABLE} holds more than {MAX_OUTPUT_BYTES} bytes (the most a run's output may be)",
        )
    if not data.strip():
        return NO_OUTPUT, None
    try:
        return json.loads(data), None
    except (ValueError, RecursionError) as error:
        return NO_OUTPUT, f"${OUTPUT_VARIABLE} holds no valid JSON: {error}"


def _identity(context: ExecutionContext) -> dict[str, str]:
    return {
        "TASKMESH_RUN_ID": context.run_id,
        "TASKMESH_ATTEMPT": str(context.attempt),
        "TASKMESH_JOB_ID": context.job_id,
        "TASKMESH_JOB_NAME": context.job_name,
        "TASKMESH_IDEMPOTENCY_KEY": context.idempotency_key,
    }


async def _stream_output(process: asyncio.subprocess.Process, context: ExecutionContext) -> bytes:
    """Send each output line to the log until its cap; return the last EXCERPT_BYTES of the output."""
    assert process.stdout is not None
    tail = b""
    lines = LineSplitter(MAX_LINE_BYTES)
    while chunk := await process.stdout.read(READ_BYTES):
        tail = (tail + chunk)[-EXCERPT_BYTES:]
        if not context.log_full():
            _log_lines(lines.feed(chunk), context)
    _log_lines(lines.finish(), context)
    return tail


def _log_lines(lines: list[bytes], context: ExecutionContext) -> None:
    for line in lines:
        if context.log_full():
            return
        context.log(line.decode("utf-8", errors="replace"))


async def stop_process_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            continue
