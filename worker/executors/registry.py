"""Picks the executor for a spec."""

from __future__ import annotations

from taskmesh.egress import EgressPolicy
from taskmesh.v1 import job_pb2, run_pb2
from worker.executors.base import ExecutionContext, ExecutionOutcome, Executor, failed
from worker.executors.http import HttpExecutor
from worker.executors.python import PythonExecutor
from worker.executors.shell import ShellExecutor
from worker.executors.simple import NoopExecutor, SleepExecutor


class ExecutorRegistry:
    def __init__(self, shell_enabled: bool, *, egress: EgressPolicy, python: PythonExecutor | None = None) -> None:
        self._http = HttpExecutor(egress)
        self._by_kind: dict[str, Executor] = {
            e.kind: e for e in (NoopExecutor(), SleepExecutor(), self._http, ShellExecutor(shell_enabled))
        }
        if python is not None:
            self._by_kind[python.kind] = python
        self.kinds = sorted(kind for kind in self._by_kind if kind != "shell" or shell_enabled)
        # The Python tasks this worker runs (its registry's): only their queues are consumed.
        self.tasks = python.registry.names if python is not None else []

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        kind = spec.WhichOneof("kind")
        executor = self._by_kind.get(kind or "")
        if executor is None:
            return failed(
                f"this worker cannot run executor {kind!r}",
                retryable=False,
                kind=run_pb2.RunError.UNSUPPORTED,
            )
        return await executor.execute(spec, context)

    async def close(self) -> None:
        await self._http.close()
