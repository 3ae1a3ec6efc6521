"""What happens to one work unit: parse, claim, execute (within the attempt's timeout, until
cancelled or the lease is lost), report, acknowledge. The execution runs inside small layers
(worker.layers: stop, lease guard, crash guard, output bound, render, time limit, lease check)
around the executor. The outcome carries the attempt's output and rendered request.

An executor starts only while the claim's lease is valid on this worker's monotonic clock, and
is stopped as soon as the lease expires there (a heartbeat answer saying the attempt is gone
revokes it at once): after a pause of the process the worker finds its deadlines passed and
causes no late effect.

The delivery is acknowledged only after the scheduler settled the outcome (recorded it, or
refused it as stale), so a worker dying at any point leaves the message to be redelivered,
and fencing makes the redelivery harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC
from typing import Protocol

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from taskmesh import parameters
from taskmesh.broker.amqp import Delivery
from taskmesh.ids import is_uuid
from taskmesh.records import AttemptRef
from taskmesh.secrets.masking import SecretMask, mask_message
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executions import Executions
from worker.executors.base import NO_OUTPUT, ExecutionContext, ExecutionOutcome, failed
from worker.executors.registry import ExecutorRegistry
from worker.layers import Attempt, Layer, compose, standard_layers
from worker.leases import Leases
from worker.output import CappedLog
from worker.session import SessionLost

log = logging.getLogger(__name__)

WORK_UNIT_TYPE = pb.WorkUnit.DESCRIPTOR.full_name
REQUEUE_DELAY_SECONDS = 1.0
REPORT_RETRY_SECONDS = 1.0


def parse_work_unit(delivery: Delivery) -> AttemptRef | None:
    """The attempt a message names, or None if it is not a well-formed work unit."""
    if delivery.message_type != WORK_UNIT_TYPE:
        return None
    try:
        unit = pb.WorkUnit.FromString(delivery.body)
    except DecodeError:
        return None
    if not is_uuid(unit.run_id) or unit.attempt < 1:
        return None
    return AttemptRef(unit.run_id, unit.attempt)


class SchedulerLink(Protocol):
    """What the pipeline asks of the scheduler stream (worker.session.SchedulerSession)."""

    @property
    def leases(self) -> Leases: ...
    async def claim(self, ref: AttemptRef) -> pb.Claim: ...
    async def report(self, outcome: pb.Outcome) -> pb.OutcomeAck: ...
    def log(self, ref: AttemptRef, text: str, truncated: bool = False) -> bool: ...


class Pipeline:
    def __init__(
        self,
        session: SchedulerLink,
        executors: ExecutorRegistry,
        executions: Executions,
        slots: int,
        kill_grace_seconds: float = 5.0,
        layers: Sequence[Layer] | None = None,
    ) -> None:
        self._session = session
        self._executors = executors
        self._executions = executions
        self._slots = asyncio.Semaphore(slots)
        self._kill_grace = kill_grace_seconds
        self._held: set[AttemptRef] = set()  # taken off the queue, not yet acknowledged
        self._run = compose(
            standard_layers(executions, session.leases) if layers is None else layers, self._execute_step
        )
        self.dead_lettered = 0
        self.executed = 0

    @property
    def busy(self) -> int:
        return self._executions.busy

    def executing(self) -> list[AttemptRef]:
        """Attempts whose lease this worker must keep: claimed, until the outcome is settled."""
        return self._executions.executing()

    def stop(self, ref: AttemptRef, reason: str) -> None:
        """Stop executing an attempt: the server cancelled it, or this worker lost its lease."""
        self._executions.stop(ref, reason)

    async def handle(self, delivery: Delivery) -> None:
        ref = parse_work_unit(delivery)
        if ref is None:
            log.warning(
                "malformed work unit (type %r, %d bytes) sent to the dead-letter queue",
                delivery.message_type,
                len(delivery.body),
            )
            self.dead_lettered += 1
            delivery.dead_letter()
            return
        if ref in self._held:  # a duplicate of something this worker already holds
            delivery.ack()
            return
        self._held.add(ref)
        try:
            async with self._slots:
                await self._claim_and_run(ref, delivery)
        finally:
            self._held.discard(ref)

    async def _claim_and_run(self, ref: AttemptRef, delivery: Delivery) -> None:
        try:
            claim = await self._session.claim(ref)
        except SessionLost:
            await asyncio.sleep(REQUEUE_DELAY_SECONDS)
            delivery.requeue()
            return
        if claim.retry_later:
            await asyncio.sleep(REQUEUE_DELAY_SECONDS)
            delivery.requeue()
            return
        if not claim.granted:
            log.info("dropped work unit: %s", claim.reason, extra={"run_id": ref.run_id, "attempt": ref.attempt})
            delivery.ack()
            return
        self._executions.claimed(ref)
        mask = SecretMask.of(claim.execution.secrets)
        try:
            outcome = await self._execute(ref, claim.execution, mask)
            await self._report_until_settled(ref, outcome, mask)
        finally:
            self._executions.settled(ref)
            self._session.leases.forget(ref)
        self.executed += 1
        delivery.ack()

    async def _execute(self, ref: AttemptRef, execution: pb.Execution, mask: SecretMask) -> ExecutionOutcome:
        if execution.secrets_error:
            return failed(execution.secrets_error)  # retryable: the database was out of reach
        leases = self._session.leases
        output = CappedLog(lambda line, truncated: self._session.log(ref, line, truncated))
        context = ExecutionContext(
            run_id=ref.run_id,
            attempt=ref.attempt,
            job_id=execution.job_id,
            job_name=execution.job_name,
            params=parameters.from_struct(execution.parameters) if execution.HasField("parameters") else {},
            slot_time=execution.slot_time.ToDatetime(tzinfo=UTC) if execution.HasField("slot_time") else None,
            log=(lambda line: output(mask.text(line))) if mask else output,
            kill_grace_seconds=self._kill_grace,
            log_full=lambda: output.full,
            lease_valid=lambda: leases.valid(ref),
            secrets=dict(execution.secrets),
        )
        timeout = execution.timeout.ToTimedelta().total_seconds() if execution.HasField("timeout") else None
        return await self._run(Attempt(ref, execution, context, timeout))

    async def _execute_step(self, attempt: Attempt) -> ExecutionOutcome:
        return await self._executors.execute(attempt.execution.executor, attempt.context)

    async def _report_until_settled(self, ref: AttemptRef, outcome: ExecutionOutcome, mask: SecretMask) -> None:
        message = pb.Outcome(
            attempt=pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt),
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            rendered_request=outcome.rendered,
        )
        if outcome.output is not NO_OUTPUT:
            json_format.ParseDict(outcome.output, message.output)
        mask_message(message, mask)  # everything the attempt produced, whatever its kind
        while True:
            try:
                ack = await self._session.report(message)
            except SessionLost:
                await asyncio.sleep(REPORT_RETRY_SECONDS)
                continue
            if ack.settled:
                if not ack.recorded:
                    log.info(
                        "outcome not recorded: %s",
                        ack.reason,
                        extra={"run_id": ref.run_id, "attempt": ref.attempt},
                    )
                return
            await asyncio.sleep(REPORT_RETRY_SECONDS)
