"""The layers around one execution (worker.layers), each with an explicit `next`, and the
registry of held attempts they share with the scheduler stream (worker.executions)."""

from __future__ import annotations

import asyncio

import pytest

from taskmesh.records import AttemptRef
from taskmesh.v1 import run_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executions import Executions
from worker.executors.base import ExecutionContext, ExecutionOutcome, LeaseExpired, succeeded
from worker.layers import Attempt, Layer, Step, compose, crash_guard, lease_check, stoppable, time_limit

REF = AttemptRef("0192d1a0-0000-7000-8000-000000000001", 1)


def _attempt(timeout: float | None = None, lease_valid: bool = True) -> Attempt:
    context = ExecutionContext(REF.run_id, REF.attempt, "job", "job", lease_valid=lambda: lease_valid)
    return Attempt(REF, pb.Execution(), context, timeout)


async def _ok(attempt: Attempt) -> ExecutionOutcome:
    return succeeded()


async def test_layers_wrap_the_step_first_one_outermost() -> None:
    seen: list[str] = []

    def named(name: str) -> Layer:
        async def layer(attempt: Attempt, next_step: Step) -> ExecutionOutcome:
            seen.append(f"{name} in")
            outcome = await next_step(attempt)
            seen.append(f"{name} out")
            return outcome

        return layer

    outcome = await compose([named("a"), named("b")], _ok)(_attempt())
    assert outcome.status == pb.Outcome.SUCCEEDED
    assert seen == ["a in", "b in", "b out", "a out"]


async def test_a_crash_a_timeout_and_an_expired_lease_become_failed_outcomes() -> None:
    async def crash(attempt: Attempt) -> ExecutionOutcome:
        raise RuntimeError("bug")

    async def hang(attempt: Attempt) -> ExecutionOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    crashed = await compose([crash_guard], crash)(_attempt())
    assert crashed.error is not None and crashed.error.message == "worker error: RuntimeError: bug"
    timed_out = await compose([time_limit], hang)(_attempt(timeout=0.01))
    assert timed_out.error is not None and timed_out.error.kind == run_pb2.RunError.TIMEOUT
    not_started = await compose([lease_check], crash)(_attempt(lease_valid=False))
    assert not_started.error is not None and not_started.error.kind == run_pb2.RunError.LOST


@pytest.mark.parametrize(("reason", "status"), [("cancelled", pb.Outcome.CANCELLED), ("lost", pb.Outcome.FAILED)])
async def test_a_stopped_execution_ends_as_what_stopped_it(reason: str, status: int) -> None:
    executions = Executions()
    started = asyncio.Event()

    async def wait(attempt: Attempt) -> ExecutionOutcome:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    running = asyncio.create_task(compose([stoppable(executions)], wait)(_attempt()))
    await started.wait()
    assert executions.busy == 1
    executions.stop(REF, reason)
    outcome = await running
    assert outcome.status == status and executions.busy == 0


async def test_executions_hold_an_attempt_from_its_claim_until_it_is_settled() -> None:
    executions = Executions()
    executions.claimed(REF)
    assert executions.executing() == [REF]
    executions.stop(REF, "lost")  # not running: nothing to stop
    executions.settled(REF)
    assert executions.executing() == []


async def test_lease_expired_raised_mid_execution_is_a_lost_attempt() -> None:
    async def effect(attempt: Attempt) -> ExecutionOutcome:
        raise LeaseExpired("gone")

    outcome = await compose([crash_guard, time_limit, lease_check], effect)(_attempt())
    assert outcome.error is not None and outcome.error.kind == run_pb2.RunError.LOST
