"""noop and sleep."""

from __future__ import annotations

import asyncio

from taskmesh.v1 import job_pb2
from worker.executors.base import ExecutionContext, ExecutionOutcome, succeeded


class NoopExecutor:
    kind = "noop"

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        return succeeded()


class SleepExecutor:
    kind = "sleep"

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        await asyncio.sleep(spec.sleep.seconds)
        return succeeded()
