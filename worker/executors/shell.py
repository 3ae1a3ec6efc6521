"""shell: runs argv directly (never through a shell), in its own process group.

Disabled unless the worker starts with TASKMESH_WORKER_SHELL_ENABLED=true. On cancellation or
timeout the whole process group gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from taskmesh.v1 import job_pb2, run_pb2
from worker.executors.base import EXCERPT_BYTES, ExecutionOutcome, failed, succeeded, tail_excerpt

DEFAULT_TIMEOUT = 3600.0
KILL_GRACE_SECONDS = 5.0


class ShellExecutor:
    kind = "shell"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    async def execute(self, spec: job_pb2.Executor) -> ExecutionOutcome:
        if not self.enabled:
            return failed(
                "shell execution is disabled on this worker (TASKMESH_WORKER_SHELL_ENABLED=false)",
                retryable=False,
                kind=run_pb2.RunError.UNSUPPORTED,
            )
        shell = spec.shell
        timeout = shell.timeout.ToTimedelta().total_seconds() if shell.HasField("timeout") else DEFAULT_TIMEOUT
        try:
            process = await asyncio.create_subprocess_exec(
                *shell.argv,
                env={**os.environ, **dict(shell.env)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return failed(f"cannot start {shell.argv[0]!r}: {error.strerror or error}", retryable=False)
        try:
            async with asyncio.timeout(timeout):
                output = await _collect_tail(process)
                exit_code = await process.wait()
        except TimeoutError:
            await stop_process_group(process)
            return failed(f"timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except asyncio.CancelledError:
            await stop_process_group(process)
            raise
        result = run_pb2.RunResult(
            shell=run_pb2.ShellResult(exit_code=exit_code, output_excerpt=tail_excerpt(output))
        )
        if exit_code == 0:
            return succeeded(result)
        return failed(f"exited with code {exit_code}", result=result)


async def _collect_tail(process: asyncio.subprocess.Process) -> bytes:
    assert process.stdout is not None
    tail = b""
    while chunk := await process.stdout.read(65536):
        tail = (tail + chunk)[-EXCERPT_BYTES:]
    return tail


async def stop_process_group(process: asyncio.subprocess.Process, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            continue
