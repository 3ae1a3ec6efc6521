"""The pipeline fences executions by the worker's own view of the lease (finding 12): an
attempt whose lease expired before it started is not started, and a running one is stopped
when its lease expires without a heartbeat extending it. Fakes stand in for the scheduler
stream and the broker delivery."""

from __future__ import annotations

import asyncio

from taskmesh.egress import EgressPolicy
from taskmesh.records import AttemptRef
from taskmesh.v1 import job_pb2, run_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executions import Executions
from worker.executors.registry import ExecutorRegistry
from worker.leases import Leases
from worker.pipeline import WORK_UNIT_TYPE, Pipeline

LOCAL = EgressPolicy(allow_loopback=True)  # the tests' targets listen on loopback


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSession:
    def __init__(self, executor: job_pb2.Executor, leases: Leases, freeze: Clock | None = None) -> None:
        self.leases = leases
        self._executor = executor
        self._freeze = freeze  # a fake clock moved 10 s on right after the claim
        self.reports: list[pb.Outcome] = []

    async def claim(self, ref: AttemptRef) -> pb.Claim:
        sent_at = self.leases.now()
        claim = pb.Claim(attempt=pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt), granted=True)
        claim.execution.executor.CopyFrom(self._executor)
        self.leases.granted(ref, sent_at)
        if self._freeze is not None:  # the process "froze" right after the claim
            self._freeze.now += 10.0
        return claim

    async def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        self.reports.append(outcome)
        return pb.OutcomeAck(attempt=outcome.attempt, settled=True, recorded=True)

    def log(self, ref: AttemptRef, text: str, truncated: bool = False) -> bool:
        return True


class FakeDelivery:
    def __init__(self, ref: AttemptRef) -> None:
        self.body = pb.WorkUnit(run_id=ref.run_id, attempt=ref.attempt).SerializeToString()
        self.message_type = WORK_UNIT_TYPE
        self.settled: list[str] = []

    def ack(self) -> None:
        self.settled.append("ack")

    def requeue(self) -> None:
        self.settled.append("requeue")


REF = AttemptRef("0192d1a0-0000-7000-8000-000000000001", 1)


async def _handle(session: FakeSession) -> FakeDelivery:
    pipeline = Pipeline(session, ExecutorRegistry(shell_enabled=False, egress=LOCAL), Executions(), slots=1)
    delivery = FakeDelivery(REF)
    await asyncio.wait_for(pipeline.handle(delivery), 10)  # type: ignore[arg-type]
    return delivery


async def test_an_attempt_whose_lease_expired_after_the_claim_is_not_started() -> None:
    clock = Clock()
    started = job_pb2.Executor(sleep=job_pb2.SleepExecutor())  # would succeed at once
    session = FakeSession(started, Leases(lease_seconds=3.0, clock=clock), freeze=clock)
    delivery = await _handle(session)
    assert delivery.settled == ["ack"]
    [outcome] = session.reports
    assert outcome.status == pb.Outcome.FAILED and outcome.error.kind == run_pb2.RunError.LOST


async def test_a_running_attempt_is_stopped_when_its_lease_runs_out_unextended() -> None:
    long_sleep = job_pb2.Executor(sleep=job_pb2.SleepExecutor(seconds=30))
    session = FakeSession(long_sleep, Leases(lease_seconds=0.5))
    await _handle(session)  # well before the 30 s sleep ends
    [outcome] = session.reports
    assert outcome.status == pb.Outcome.FAILED and outcome.error.kind == run_pb2.RunError.LOST
