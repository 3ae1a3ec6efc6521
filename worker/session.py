"""The worker's Connect stream to the scheduler, kept open across failures.

Callers await claim() and report(); requests made while another write is in flight are sent
together in one message, so a busy worker sends few, large messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from grpc import aio

from taskmesh.records import AttemptRef
from taskmesh.v1 import worker_service_pb2 as pb
from taskmesh.v1 import worker_service_pb2_grpc
from worker.credentials import TokenSource

log = logging.getLogger(__name__)

Key = tuple[str, int]
T = TypeVar("T")
CONNECT_WAIT_SECONDS = 10.0


class SessionLost(Exception):
    """The stream broke (or never came up) before the answer arrived."""


def _key(ref: pb.AttemptRef | AttemptRef) -> Key:
    return (ref.run_id, ref.attempt)


class SchedulerSession:
    def __init__(
        self,
        address: str,
        tokens: TokenSource,
        hello: pb.Hello,
        on_cancel: Callable[[AttemptRef], None] = lambda ref: None,
    ) -> None:
        self._address = address
        self._tokens = tokens
        self._hello = hello
        self._on_cancel = on_cancel
        self._connected = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._claims: dict[Key, asyncio.Future[pb.Claim]] = {}
        self._reports: dict[Key, asyncio.Future[pb.OutcomeAck]] = {}
        self._unsent_claims: list[pb.AttemptRef] = []
        self._unsent_reports: list[pb.Outcome] = []

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float = CONNECT_WAIT_SECONDS) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as error:
            raise SessionLost("not connected to the scheduler") from error

    async def claim(self, ref: AttemptRef) -> pb.Claim:
        await self.wait_connected()
        future: asyncio.Future[pb.Claim] = asyncio.get_running_loop().create_future()
        self._claims[_key(ref)] = future
        self._unsent_claims.append(pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt))
        self._wake_sender.set()
        return await future

    async def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        await self.wait_connected()
        future: asyncio.Future[pb.OutcomeAck] = asyncio.get_running_loop().create_future()
        self._reports[_key(outcome.attempt)] = future
        self._unsent_reports.append(outcome)
        self._wake_sender.set()
        return await future

    async def run_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._run_once()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except (grpc.RpcError, SessionLost, OSError) as error:
                log.warning("scheduler stream lost (%s); reconnecting in %.1fs", _describe(error), delay)
            finally:
                self._connected.clear()
                self._fail_pending(SessionLost("the scheduler stream was lost"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _run_once(self) -> None:
        token = await self._tokens.token()
        async with aio.insecure_channel(self._address) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            call = stub.Connect(metadata=(("authorization", f"Bearer {token}"),))
            await call.write(pb.ConnectRequest(hello=self._hello))
            welcome = await call.read()
            if not isinstance(welcome, pb.ConnectResponse) or welcome.WhichOneof("message") != "welcome":
                raise SessionLost("the scheduler did not welcome this worker")
            log.info("connected to scheduler at %s", self._address)
            self._connected.set()
            sender = asyncio.create_task(self._send_loop(call))
            reader = asyncio.create_task(self._read_loop(call))
            done, pending = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            call.cancel()
            for task in done:
                task.result()

    async def _send_loop(self, call: aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]) -> None:
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            if self._unsent_claims:
                claims, self._unsent_claims = self._unsent_claims, []
                await call.write(pb.ConnectRequest(claim=pb.ClaimRuns(attempts=claims)))
            if self._unsent_reports:
                reports, self._unsent_reports = self._unsent_reports, []
                await call.write(pb.ConnectRequest(report=pb.ReportOutcomes(outcomes=reports)))

    async def _read_loop(self, call: aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]) -> None:
        while True:
            message = await call.read()
            if not isinstance(message, pb.ConnectResponse):
                raise SessionLost("the scheduler closed the stream")
            kind = message.WhichOneof("message")
            if kind == "claimed":
                for claim in message.claimed.claims:
                    _resolve(self._claims, _key(claim.attempt), claim)
            elif kind == "recorded":
                for ack in message.recorded.acks:
                    _resolve(self._reports, _key(ack.attempt), ack)
            elif kind == "cancel":
                self._on_cancel(AttemptRef(message.cancel.attempt.run_id, message.cancel.attempt.attempt))

    def _fail_pending(self, error: Exception) -> None:
        for pending in (self._claims, self._reports):
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)
            pending.clear()
        self._unsent_claims.clear()
        self._unsent_reports.clear()


def _resolve(pending: dict[Key, asyncio.Future[T]], key: Key, value: T) -> None:
    future = pending.pop(key, None)
    if future is not None and not future.done():
        future.set_result(value)


def _describe(error: BaseException) -> str:
    if isinstance(error, aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or error.__class__.__name__
