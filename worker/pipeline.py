"""What happens to one work unit: parse, claim, execute, report, acknowledge.

The delivery is acknowledged only after the scheduler settled the outcome (recorded it, or
refused it as stale), so a worker dying at any point leaves the message to be redelivered,
and fencing makes the redelivery harmless.
"""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import DecodeError

from taskmesh.broker.amqp import Delivery
from taskmesh.ids import is_uuid
from taskmesh.records import AttemptRef
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executors.base import ExecutionOutcome, failed
from worker.executors.registry import ExecutorRegistry
from worker.session import SchedulerSession, SessionLost

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


class Pipeline:
    def __init__(self, session: SchedulerSession, executors: ExecutorRegistry, slots: int) -> None:
        self._session = session
        self._executors = executors
        self._slots = asyncio.Semaphore(slots)
        self._active: set[AttemptRef] = set()
        self.dead_lettered = 0
        self.executed = 0

    @property
    def busy(self) -> int:
        return len(self._active)

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
        if ref in self._active:  # a duplicate of something this worker already holds
            delivery.ack()
            return
        self._active.add(ref)
        try:
            async with self._slots:
                await self._claim_and_run(ref, delivery)
        finally:
            self._active.discard(ref)

    async def _claim_and_run(self, ref: AttemptRef, delivery: Delivery) -> None:
        log_extra = {"run_id": ref.run_id, "attempt": ref.attempt}
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
            log.info("dropped work unit: %s", claim.reason, extra=log_extra)
            delivery.ack()
            return
        outcome = await self._execute(claim.execution, log_extra)
        await self._report_until_settled(ref, outcome)
        self.executed += 1
        delivery.ack()

    async def _execute(self, execution: pb.Execution, log_extra: dict[str, object]) -> ExecutionOutcome:
        try:
            return await self._executors.execute(execution.executor)
        except Exception as error:  # an executor bug must not lose the run
            log.exception("executor crashed", extra=log_extra)
            return failed(f"worker error: {error.__class__.__name__}: {error}")

    async def _report_until_settled(self, ref: AttemptRef, outcome: ExecutionOutcome) -> None:
        message = pb.Outcome(
            attempt=pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt),
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
        )
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
