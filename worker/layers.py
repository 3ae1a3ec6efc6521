"""The behaviours around one execution, each a small layer with an explicit `next`.

The pipeline runs `execute` (the executor itself) inside these, outermost first:

- `stoppable`: the execution runs in its own task, registered in `Executions`, so that the
  scheduler (cancel) or the lease clock can stop it; a stop becomes the outcome it stands for;
- `lease_guard`: stops the execution once its lease expires on this worker's clock;
- `crash_guard`: an executor bug fails the attempt (logged), it must not lose the run;
- `bounded_output`: an output over MAX_OUTPUT_BYTES of JSON (or no JSON) fails the attempt for
  good (the run's output is never cut or dropped silently);
- `render`: the executor's templates rendered over the run's inputs (taskmesh.executor_templates);
  a render error fails the attempt for good (kind TEMPLATE, naming the field); the executor
  gets the rendered spec, the outcome the rendered request (secrets redacted);
- `time_limit`: the attempt's timeout;
- `lease_check`: nothing starts (or goes on) once the lease expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from taskmesh import executor_templates, parameters
from taskmesh.limits import MAX_OUTPUT_BYTES
from taskmesh.records import AttemptRef
from taskmesh.templates import TemplateError
from taskmesh.v1 import run_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executions import Executions
from worker.executors.base import (
    NO_OUTPUT,
    ExecutionContext,
    ExecutionOutcome,
    LeaseExpired,
    cancelled,
    failed,
)
from worker.leases import Leases

log = logging.getLogger("worker.pipeline")  # its lines keep the logger they always had

LEASE_LOST_MESSAGE = "the attempt was taken away from this worker (lease lost)"


@dataclass(frozen=True)
class Attempt:
    """One execution of a claimed attempt."""

    ref: AttemptRef
    execution: pb.Execution
    context: ExecutionContext
    timeout: float | None  # seconds, from the claim


Step = Callable[[Attempt], Coroutine[Any, Any, ExecutionOutcome]]
Layer = Callable[[Attempt, Step], Coroutine[Any, Any, ExecutionOutcome]]


def compose(layers: Sequence[Layer], step: Step) -> Step:
    """`step` wrapped in `layers`, the first one outermost."""
    for layer in reversed(layers):
        step = _bind(layer, step)
    return step


def _bind(layer: Layer, next_step: Step) -> Step:
    return lambda attempt: layer(attempt, next_step)


def standard_layers(executions: Executions, leases: Leases) -> list[Layer]:
    return [
        stoppable(executions),
        lease_guard(executions, leases),
        crash_guard,
        bounded_output,
        render,
        time_limit,
        lease_check,
    ]


def stoppable(executions: Executions) -> Layer:
    async def layer(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
        task = asyncio.create_task(next_step(attempt))
        running = executions.started(attempt.ref, task)
        try:
            return await task
        except asyncio.CancelledError:
            if running.stop_reason is None:
                raise  # the worker itself is being cancelled
            if running.stop_reason == "cancelled":
                return cancelled()
            return failed(LEASE_LOST_MESSAGE, kind=run_pb2.RunError.LOST)
        finally:
            executions.ended(attempt.ref)

    return layer


def lease_guard(executions: Executions, leases: Leases) -> Layer:
    async def guard(ref: AttemptRef) -> None:
        while (remaining := leases.remaining(ref)) > 0:  # noqa: ASYNC110 (a deadline, maybe extended)
            await asyncio.sleep(remaining)
        executions.stop(ref, "lost")

    async def layer(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
        watch = asyncio.create_task(guard(attempt.ref))
        try:
            return await next_step(attempt)
        finally:
            watch.cancel()

    return layer


async def crash_guard(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
    try:
        return await next_step(attempt)
    except Exception as error:  # an executor bug must not lose the run
        log.exception("executor crashed", extra=_extra(attempt))
        return failed(f"worker error: {error.__class__.__name__}: {error}")


async def bounded_output(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
    outcome = await next_step(attempt)
    if outcome.output is NO_OUTPUT:
        return outcome
    _, problem = parameters.measured(outcome.output, MAX_OUTPUT_BYTES)
    if problem is not None:
        refused = failed(f"the output {problem}", retryable=False, result=outcome.result)
        return replace(refused, rendered=outcome.rendered)
    return outcome


async def render(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
    spec = attempt.execution.executor
    if spec.WhichOneof("kind") not in executor_templates.TEMPLATED_KINDS:
        return await next_step(attempt)
    try:
        rendered = executor_templates.render(spec, attempt.context.template_context())
    except TemplateError as error:
        log.info("template error: %s", error, extra=_extra(attempt))
        return failed(str(error), retryable=False, kind=run_pb2.RunError.TEMPLATE)
    execution = attempt.execution
    if rendered is not spec:
        execution = pb.Execution()
        execution.CopyFrom(attempt.execution)
        execution.executor.CopyFrom(rendered)
    outcome = await next_step(replace(attempt, execution=execution))
    return replace(outcome, rendered=executor_templates.rendered_request(rendered))


async def time_limit(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
    try:
        async with asyncio.timeout(attempt.timeout):
            return await next_step(attempt)
    except TimeoutError:
        return failed(f"the attempt timed out after {attempt.timeout:g}s", kind=run_pb2.RunError.TIMEOUT)


async def lease_check(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
    try:
        attempt.context.ensure_lease()  # nothing awaits between here and the executor's effect
        return await next_step(attempt)
    except LeaseExpired:
        log.info("not starting or continuing the attempt: its lease expired", extra=_extra(attempt))
        return failed(LEASE_LOST_MESSAGE, kind=run_pb2.RunError.LOST)


def _extra(attempt: Attempt) -> dict[str, object]:
    return {"run_id": attempt.context.run_id, "attempt": attempt.context.attempt}
