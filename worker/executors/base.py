"""What every executor is given (ExecutionContext: the run's inputs and the worker's hooks) and
what it returns (ExecutionOutcome, with an optional JSON output), and helpers to build both.

The contract for an executor (noop, sleep, http, shell, python, ...):

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome

- `spec` is already rendered: templates in http url/headers/body and shell argv/env were
  replaced by the worker's render layer (worker/rendering.py) before the executor runs; a render
  error never reaches the executor (the attempt fails with kind TEMPLATE).
- `context.params` are the run's merged parameters (plain JSON: dict/list/str/int/float/bool/None;
  integral numbers are ints), `context.slot_time` the scheduled slot (None for other runs),
  `context.idempotency_key` the value that is the same for every attempt of the run (python
  tasks expose it as ctx.idempotency_key; http sends it as the Idempotency-Key header).
- An executor reports its output by returning `succeeded(result, output=value)` (or `failed(...,
  output=value)`): any JSON value, NO_OUTPUT (the default) when there is none. The pipeline
  serializes it, fails the attempt non-retryably if it is over taskmesh.limits.MAX_OUTPUT_BYTES, and the
  scheduler writes it in the same guarded statement as the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from taskmesh.secrets.values import SecretValues
from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2

Status = worker_service_pb2.Outcome.Status
EXCERPT_BYTES = 4096


# A JSON value: what parameters and outputs are made of.
JsonValue = Any


class _NoOutput:
    """The output of an attempt that produced none (distinct from the JSON value null)."""

    def __repr__(self) -> str:
        return "NO_OUTPUT"


NO_OUTPUT: Final = _NoOutput()


@dataclass(frozen=True)
class ExecutionOutcome:
    status: Status
    result: run_pb2.RunResult | None = None
    error: run_pb2.RunError | None = None
    # Any JSON value the attempt produced (NO_OUTPUT: none); bounded by the pipeline.
    output: JsonValue = NO_OUTPUT
    # Filled by the render layer: what was executed, secrets redacted.
    rendered: run_pb2.RenderedRequest | None = None


def succeeded(result: run_pb2.RunResult | None = None, *, output: JsonValue = NO_OUTPUT) -> ExecutionOutcome:
    return ExecutionOutcome(worker_service_pb2.Outcome.SUCCEEDED, result=result, output=output)


def failed(
    message: str,
    *,
    retryable: bool = True,
    kind: int = run_pb2.RunError.EXECUTOR_FAILED,
    result: run_pb2.RunResult | None = None,
    output: JsonValue = NO_OUTPUT,
) -> ExecutionOutcome:
    error = run_pb2.RunError(kind=kind, message=message[:2000], retryable=retryable)  # type: ignore[arg-type]
    return ExecutionOutcome(worker_service_pb2.Outcome.FAILED, result=result, error=error, output=output)


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
    """The run's inputs (identity, parameters, built-ins), where output lines go, and whether
    the attempt is still ours. One record for every executor (see the module docstring)."""

    run_id: str
    attempt: int
    job_id: str
    job_name: str
    # The run's merged parameters (the job's defaults with the trigger's over them), validated.
    params: dict[str, JsonValue] = field(default_factory=dict)
    # SCHEDULE runs: the nominal slot; None otherwise.
    slot_time: datetime | None = None
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

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of the run (and only of this run): its id."""
        return self.run_id

    def template_context(self) -> dict[str, JsonValue]:
        """The names templates see: params, run (id, attempt, slot_time), job (id, name), secrets."""
        return {
            "params": self.params,
            "run": {
                "id": self.run_id,
                "attempt": self.attempt,
                "slot_time": self.slot_time.isoformat().replace("+00:00", "Z") if self.slot_time else None,
                "idempotency_key": self.idempotency_key,
            },
            "job": {"id": self.job_id, "name": self.job_name},
            "secrets": SecretValues(self.secrets),
        }

    def ensure_lease(self) -> None:
        """Raise LeaseExpired unless the lease is still valid: call it right before an effect."""
        if not self.lease_valid():
            raise LeaseExpired(f"the lease on attempt {self.attempt} of run {self.run_id} expired")


class Executor(Protocol):
    kind: str

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome: ...
