"""What every executor returns, and helpers to build it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2

Status = worker_service_pb2.Outcome.Status
EXCERPT_BYTES = 4096


@dataclass(frozen=True)
class ExecutionOutcome:
    status: Status
    result: run_pb2.RunResult | None = None
    error: run_pb2.RunError | None = None


def succeeded(result: run_pb2.RunResult | None = None) -> ExecutionOutcome:
    return ExecutionOutcome(worker_service_pb2.Outcome.SUCCEEDED, result=result)


def failed(
    message: str,
    *,
    retryable: bool = True,
    kind: int = run_pb2.RunError.EXECUTOR_FAILED,
    result: run_pb2.RunResult | None = None,
) -> ExecutionOutcome:
    error = run_pb2.RunError(kind=kind, message=message[:2000], retryable=retryable)  # type: ignore[arg-type]
    return ExecutionOutcome(worker_service_pb2.Outcome.FAILED, result=result, error=error)


def cancelled() -> ExecutionOutcome:
    return ExecutionOutcome(worker_service_pb2.Outcome.CANCELLED)


def head_excerpt(data: bytes) -> str:
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def tail_excerpt(data: bytes) -> str:
    return data[-EXCERPT_BYTES:].decode("utf-8", errors="replace")


LogSink = Callable[[str], None]


@dataclass(frozen=True)
class ExecutionContext:
    """Who is executing and where output lines go."""

    run_id: str
    attempt: int
    job_id: str
    job_name: str
    log: LogSink = field(default=lambda line: None)
    kill_grace_seconds: float = 5.0


class Executor(Protocol):
    kind: str

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome: ...
