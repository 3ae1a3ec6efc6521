"""WorkerService.Connect: one stream per worker; claims and reports in, answers and cancels out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.duration_pb2 import Duration

from scheduler.attempts import AttemptLedger, next_state
from taskmesh.convert import from_json, to_json
from taskmesh.errors import InvalidArgument, Unavailable
from taskmesh.ids import is_uuid
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, OutcomeReport, RunRecord
from taskmesh.states import RunState
from taskmesh.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext
Request = worker_service_pb2.ConnectRequest
Response = worker_service_pb2.ConnectResponse

ATTEMPT_STATUS = {
    worker_service_pb2.Outcome.SUCCEEDED: RunState.SUCCEEDED,
    worker_service_pb2.Outcome.FAILED: RunState.FAILED,
    worker_service_pb2.Outcome.CANCELLED: RunState.CANCELLED,
}


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, ledger: AttemptLedger, lease_seconds: float) -> None:
        self._ledger = ledger
        self._lease_seconds = lease_seconds

    async def Connect(self, requests: AsyncIterator[Request], context: Context) -> AsyncIterator[Response]:
        hello = await _first_hello(requests)
        session = _Session(hello.worker_id, self._ledger)
        log.info(
            "worker %s connected (%d slots)",
            hello.worker_id,
            hello.slots,
            extra={"worker_id": hello.worker_id},
        )
        lease = Duration()
        lease.FromNanoseconds(int(self._lease_seconds * 1e9))
        yield Response(welcome=worker_service_pb2.Welcome(lease=lease))
        reader = asyncio.create_task(session.read(requests))
        try:
            async for response in session.responses(reader):
                yield response
        finally:
            reader.cancel()
            await session.close()
            log.info("worker %s disconnected", hello.worker_id, extra={"worker_id": hello.worker_id})


def _well_formed(ref: worker_service_pb2.AttemptRef) -> bool:
    return ref.attempt >= 1 and is_uuid(ref.run_id)


async def _first_hello(requests: AsyncIterator[Request]) -> worker_service_pb2.Hello:
    try:
        first = await anext(requests)
    except StopAsyncIteration as error:
        raise InvalidArgument("hello", "the stream ended before Hello") from error
    if first.WhichOneof("message") != "hello" or not first.hello.worker_id:
        raise InvalidArgument("hello.worker_id", "the first message must be Hello with a worker_id")
    return first.hello


class _Session:
    """One worker's stream: each claim or report message is handled in its own task, so that
    batches from many workers meet in the ledger's group commits."""

    def __init__(self, worker_id: str, ledger: AttemptLedger) -> None:
        self.worker_id = worker_id
        self._ledger = ledger
        self._outbound: asyncio.Queue[Response] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, requests: AsyncIterator[Request]) -> None:
        async for request in requests:
            kind = request.WhichOneof("message")
            if kind == "claim":
                self._spawn(self._claim(request.claim))
            elif kind == "report":
                self._spawn(self._report(request.report))

    async def responses(self, reader: asyncio.Task[None]) -> AsyncIterator[Response]:
        while True:
            getter = asyncio.ensure_future(self._outbound.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            reader.result()  # re-raise what ended the reader, if anything
            return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _claim(self, message: worker_service_pb2.ClaimRuns) -> None:
        results = await asyncio.gather(*(self._claim_one(a) for a in message.attempts), return_exceptions=True)
        claims = []
        for ref, result in zip(message.attempts, results, strict=True):
            claim = worker_service_pb2.Claim(attempt=ref)
            if isinstance(result, Unavailable):
                claim.retry_later = True
                claim.reason = result.message
            elif isinstance(result, BaseException):
                log.error("claim of %s failed: %r", ref.run_id, result, extra={"run_id": ref.run_id})
                claim.retry_later = True
                claim.reason = "internal error"
            elif result is None:
                claim.reason = "not claimable: already claimed, stale attempt, cancelled or deleted"
            else:
                claim.granted = True
                claim.execution.job_id = result.run.job_id
                claim.execution.job_name = result.run.job_name
                claim.execution.executor.CopyFrom(from_json(result.executor, job_pb2.Executor))
            claims.append(claim)
        await self._outbound.put(Response(claimed=worker_service_pb2.ClaimRunsResult(claims=claims)))

    async def _claim_one(self, ref: worker_service_pb2.AttemptRef) -> ClaimedAttempt | None:
        if not _well_formed(ref):
            return None  # a malformed reference must not fail the batch it would join
        return await self._ledger.claim(ClaimRequest(AttemptRef(ref.run_id, ref.attempt), self.worker_id))

    async def _report_one(self, outcome: worker_service_pb2.Outcome) -> RunRecord | None:
        if not _well_formed(outcome.attempt):
            return None
        return await self._ledger.record(self._outcome_report(outcome))

    async def _report(self, message: worker_service_pb2.ReportOutcomes) -> None:
        results = await asyncio.gather(*(self._report_one(o) for o in message.outcomes), return_exceptions=True)
        acks = []
        for outcome, result in zip(message.outcomes, results, strict=True):
            ack = worker_service_pb2.OutcomeAck(attempt=outcome.attempt)
            if isinstance(result, BaseException):
                if not isinstance(result, Unavailable):
                    log.error("report of %s failed: %r", outcome.attempt.run_id, result)
                ack.reason = "not recorded yet; report again"
            elif result is None:
                ack.settled = True
                ack.reason = "stale report: the attempt is no longer this worker's"
            else:
                ack.settled = True
                ack.recorded = True
            acks.append(ack)
        await self._outbound.put(Response(recorded=worker_service_pb2.ReportOutcomesResult(acks=acks)))

    def _outcome_report(self, outcome: worker_service_pb2.Outcome) -> OutcomeReport:
        status = ATTEMPT_STATUS.get(outcome.status, RunState.FAILED)
        return OutcomeReport(
            ref=AttemptRef(outcome.attempt.run_id, outcome.attempt.attempt),
            worker_id=self.worker_id,
            attempt_status=status,
            new_state=next_state(status),
            result=to_json(outcome.result) if outcome.HasField("result") else None,
            error=to_json(outcome.error) if outcome.HasField("error") else None,
        )
