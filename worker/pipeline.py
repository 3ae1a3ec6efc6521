"""What happens to one work unit: parse, claim, execute (within the attempt's timeout, until
cancelled or the lease is lost), report, acknowledge.

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
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from taskmesh.broker.amqp import Delivery
from taskmesh.ids import is_uuid
from taskmesh.records import AttemptRef
from taskmesh.v1 import run_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executors.base import ExecutionContext, ExecutionOutcome, LeaseExpired, cancelled, failed
from worker.executors.registry import ExecutorRegistry
from worker.output import CappedLog
from worker.session import SchedulerSession, SessionLost

log = logging.getLogger(__name__)

WORK_UNIT_TYPE = pb.WorkUnit.DESCRIPTOR.full_name
REQUEUE_DELAY_SECONDS = 1.0
REPORT_RETRY_SECONDS = 1.0
LEASE_LOST_MESSAGE = "the attempt was taken away from this worker (lease lost)"


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


@dataclass
class _Execution:
    task: asyncio.Task[ExecutionOutcome]
    stop_reason: str | None = None  # "cancelled" (asked by the server) or "lost" (lease gone)


class Pipeline:
    def __init__(
        self, session: SchedulerSession, executors: ExecutorRegistry, slots: int, kill_grace_seconds: float = 5.0
    ) -> None:
        self._session = session
        self._executors = executors
        self._slots = asyncio.Semaphore(slots)
        self._kill_grace = kill_grace_seconds
        self._held: set[AttemptRef] = set()  # taken off the queue, not yet acknowledged
        self._executions: dict[AttemptRef, _Execution] = {}
        self._claimed: set[AttemptRef] = set()  # granted and not yet settled: heartbeats keep them
        self.dead_lettered = 0
        self.executed = 0

    @property
    def busy(self) -> int:
        return len(self._executions)

    def executing(self) -> list[AttemptRef]:
        """Attempts whose lease this worker must keep: claimed, until the outcome is settled."""
        return list(self._claimed)

    def stop(self, ref: AttemptRef, reason: str) -> None:
        """Stop executing an attempt: the server cancelled it, or this worker lost its lease."""
        execution = self._executions.get(ref)
        if execution is not None and execution.stop_reason is None:
            log.info("stopping attempt: %s", reason, extra={"run_id": ref.run_id, "attempt": ref.attempt})
            execution.stop_reason = reason
            execution.task.cancel()

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
        self._claimed.add(ref)
        try:
            outcome = await self._execute(ref, claim.execution)
            await self._report_until_settled(ref, outcome)
        finally:
            self._claimed.discard(ref)
            self._session.leases.forget(ref)
        self.executed += 1
        delivery.ack()

    async def _execute(self, ref: AttemptRef, execution: pb.Execution) -> ExecutionOutcome:
        leases = self._session.leases
        output = CappedLog(lambda line, truncated: self._session.log(ref, line, truncated))
        context = ExecutionContext(
            run_id=ref.run_id,
            attempt=ref.attempt,
            job_id=execution.job_id,
            job_name=execution.job_name,
            log=output,
            kill_grace_seconds=self._kill_grace,
            log_full=lambda: output.full,
            lease_valid=lambda: leases.valid(ref),
        )
        timeout = execution.timeout.ToTimedelta().total_seconds() if execution.HasField("timeout") else None
        task = asyncio.create_task(self._run_executor(execution, context, timeout))
        entry = _Execution(task)
        self._executions[ref] = entry
        guard = asyncio.create_task(self._guard_lease(ref))
        try:
            return await task
        except asyncio.CancelledError:
            if entry.stop_reason is None:
                raise  # the worker itself is being cancelled
            if entry.stop_reason == "cancelled":
                return cancelled()
            return failed(LEASE_LOST_MESSAGE, kind=run_pb2.RunError.LOST)
        finally:
            guard.cancel()
            del self._executions[ref]

    async def _guard_lease(self, ref: AttemptRef) -> None:
        """Stop the execution once its lease expires on this worker's clock."""
        leases = self._session.leases
        while (remaining := leases.remaining(ref)) > 0:  # noqa: ASYNC110 (a deadline, maybe extended)
            await asyncio.sleep(remaining)
        self.stop(ref, "lost")

    async def _run_executor(
        self, execution: pb.Execution, context: ExecutionContext, timeout: float | None
    ) -> ExecutionOutcome:
        try:
            async with asyncio.timeout(timeout):
                context.ensure_lease()  # nothing awaits between here and the executor's effect
                return await self._executors.execute(execution.executor, context)
        except LeaseExpired:
            log.info("not starting or continuing the attempt: its lease expired", extra=_extra(context))
            return failed(LEASE_LOST_MESSAGE, kind=run_pb2.RunError.LOST)
        except TimeoutError:
            return failed(f"the attempt timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except Exception as error:  # an executor bug must not lose the run
            log.exception("executor crashed", extra=_extra(context))
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


def _extra(context: ExecutionContext) -> dict[str, object]:
    return {"run_id": context.run_id, "attempt": context.attempt}
