"""noop and sleep."""

from __future__ import annotations

import asyncio

from taskmesh.v1 import job_pb2
from worker.executors.base import ExecutionOutcome, succeeded


class NoopExecutor:
    kind = "noop"

    async def execute(self, spec: job_pb2.Executor) -> ExecutionOutcome:
        return succeeded()


class SleepExecutor:
    kind = "sleep"

    async def execute(self, spec: job_pb2.Executor) -> ExecutionOutcome:
        await asyncio.sleep(spec.sleep.seconds)
        return succeeded()
