"""What every executor returns, and helpers to build it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


class LeaseExpired(Exception):
    """This worker's lease on the attempt ran out: it must cause no (further) effect."""


@dataclass(frozen=True)
class ExecutionContext:
    """Who is executing, where output lines go, and whether the attempt is still ours."""

    run_id: str
    attempt: int
    job_id: str
    job_name: str
    log: LogSink = field(default=lambda line: None)
    kill_grace_seconds: float = 5.0
    # True once the attempt's output reached its cap: further lines are discarded, so an
    # executor may stop splitting its output into lines (but must keep draining it).
    log_full: Callable[[], bool] = field(default=lambda: False)
    # False once the worker knows its lease on the attempt expired (on its monotonic clock).
    lease_valid: Callable[[], bool] = field(default=lambda: True)
    # The values of the secrets the executor's templates reference, by name (Execution.secrets):
    # for rendering only; everything the attempt produces is masked with them on the way out.
    secrets: Mapping[str, str] = field(default_factory=dict)

    def ensure_lease(self) -> None:
        """Raise LeaseExpired unless the lease is still valid: call it right before an effect."""
        if not self.lease_valid():
            raise LeaseExpired(f"the lease on attempt {self.attempt} of run {self.run_id} expired")


class Executor(Protocol):
    kind: str

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome: ...
