"""An in-process fake of the scheduler's side of the worker stream, for unit tests of
worker.session: a WorkerService that welcomes, grants claims, records outcomes, answers
heartbeats and keeps every request it got, served by a real grpc.aio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc import aio

from taskmesh.records import AttemptRef
from taskmesh.v1 import worker_service_pb2 as pb
from taskmesh.v1 import worker_service_pb2_grpc


class StaticTokens:
    """worker.session.Tokens without an api_server."""

    async def token(self) -> str:
        return "test-token"


class FakeScheduler(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, lease_seconds: float = 30.0) -> None:
        self.lease_seconds = lease_seconds
        self.hellos: list[pb.Hello] = []
        self.requests: list[pb.ConnectRequest] = []  # every message after Hello, in arrival order
        self.lost: set[AttemptRef] = set()  # what heartbeats answer as no longer this worker's
        self.refused: set[AttemptRef] = set()  # claims answered "not claimable"
        self.answering = asyncio.Event()  # cleared: requests are kept but not answered
        self.answering.set()
        self._streams = 0
        self._outbound: asyncio.Queue[pb.ConnectResponse | None] = asyncio.Queue()

    def of_kind(self, kind: str) -> list[pb.ConnectRequest]:
        return [r for r in self.requests if r.WhichOneof("message") == kind]

    def cancel(self, ref: AttemptRef) -> None:
        attempt = pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt)
        self._outbound.put_nowait(pb.ConnectResponse(cancel=pb.CancelAttempt(attempt=attempt)))

    def drop(self) -> None:
        """End the current stream (as a scheduler going away would)."""
        self._outbound.put_nowait(None)

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        first = await anext(request_iterator)
        self.hellos.append(first.hello)
        self._streams += 1
        lease = Duration()
        lease.FromNanoseconds(int(self.lease_seconds * 1e9))
        token = first.hello.session_token or f"token-{self._streams}"
        yield pb.ConnectResponse(welcome=pb.Welcome(lease=lease, session_token=token))
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            while (response := await self._outbound.get()) is not None:
                yield response
        finally:
            reader.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test")

    async def _read(self, requests: AsyncIterator[pb.ConnectRequest]) -> None:
        async for request in requests:
            self.requests.append(request)
            await self.answering.wait()
            if (answer := self._answer(request)) is not None:
                self._outbound.put_nowait(answer)

    def _answer(self, request: pb.ConnectRequest) -> pb.ConnectResponse | None:
        kind = request.WhichOneof("message")
        if kind == "claim":
            claims = [self._claim(a) for a in request.claim.attempts]
            return pb.ConnectResponse(claimed=pb.ClaimRunsResult(claims=claims))
        if kind == "report":
            acks = [pb.OutcomeAck(attempt=o.attempt, settled=True, recorded=True) for o in request.report.outcomes]
            return pb.ConnectResponse(recorded=pb.ReportOutcomesResult(acks=acks))
        if kind == "heartbeat":
            lost = [a for a in request.heartbeat.attempts if AttemptRef(a.run_id, a.attempt) in self.lost]
            result = pb.HeartbeatResult(lost=lost, sequence=request.heartbeat.sequence)
            return pb.ConnectResponse(heartbeat=result)
        return None

    def _claim(self, ref: pb.AttemptRef) -> pb.Claim:
        if AttemptRef(ref.run_id, ref.attempt) in self.refused:
            return pb.Claim(attempt=ref, reason="not claimable")
        claim = pb.Claim(attempt=ref, granted=True)
        claim.execution.job_id = "job"
        claim.execution.executor.sleep.SetInParent()
        return claim


@asynccontextmanager
async def serving(scheduler: FakeScheduler) -> AsyncIterator[str]:
    """Serve `scheduler` on a free loopback port; yields its address."""
    server = aio.server()
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(scheduler, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
