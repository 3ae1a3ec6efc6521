"""The worker's Connect stream to the scheduler, kept open across failures.

Callers await claim() and report(); requests made while another write is in flight are sent
together in one message, so a busy worker sends few, large messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Protocol, TypeVar

import grpc
from grpc import aio

from taskmesh.reconnect import Reconnect
from taskmesh.records import AttemptRef
from taskmesh.tls import ClientTls, aio_channel
from taskmesh.v1 import run_pb2, worker_service_pb2_grpc
from taskmesh.v1 import worker_service_pb2 as pb
from worker.leases import Leases

log = logging.getLogger(__name__)

Key = tuple[str, int]
T = TypeVar("T")
CONNECT_WAIT_SECONDS = 10.0
# What waits to be sent, at most (more is dropped: while disconnected, or if the output comes
# faster than the stream takes it). Each attempt ships at most its output cap anyway.
MAX_UNSENT_LOG_LINES = 50_000
MAX_UNSENT_LOG_BYTES = 8 << 20
LINE_OVERHEAD_BYTES = 16  # what a line costs on the stream besides its text, roughly
# Log lines go in messages of at most this (gRPC refuses messages over 4 MiB).
MAX_LOG_MESSAGE_BYTES = 1 << 20
MAX_ENTRY_BYTES = 256 << 10


class SessionLost(Exception):
    """The stream broke (or never came up) before the answer arrived."""


def _key(ref: pb.AttemptRef | AttemptRef) -> Key:
    return (ref.run_id, ref.attempt)


class Tokens(Protocol):
    """The worker's access token (worker.credentials.TokenSource)."""

    async def token(self) -> str: ...


class HeldAttempts(Protocol):
    """What the worker executes, and how to stop one attempt (worker.executions.Executions)."""

    def executing(self) -> list[AttemptRef]: ...
    def stop(self, ref: AttemptRef, reason: str) -> None: ...


class SchedulerSession:
    def __init__(
        self, address: str, tokens: Tokens, hello: pb.Hello, held: HeldAttempts, tls: ClientTls | None = None
    ) -> None:
        self._address = address
        self._tls = tls  # None: plaintext (taskmesh/tls.py)
        self._tokens = tokens
        self._hello = hello
        self._held = held  # heartbeats list them; a cancel or a lost lease stops one
        self._heartbeat_interval = 10.0
        # Lease deadlines of granted claims, extended by answered heartbeats.
        self.leases = Leases()
        self._beats: dict[int, tuple[float, list[AttemptRef]]] = {}  # sequence -> (sent at, attempts)
        self._beat_sequence = 0
        self._unsent_logs: list[pb.AttemptLog] = []
        self._unsent_log_lines = 0
        self._unsent_log_bytes = 0
        self._last_entry_bytes = 0
        self._connected = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._heartbeat_due = False
        # Until the consumer says otherwise it counts as consuming (as an older worker does).
        self._consumer_down = False
        self._claims: dict[Key, asyncio.Future[pb.Claim]] = {}
        self._reports: dict[Key, asyncio.Future[pb.OutcomeAck]] = {}
        self._unsent_claims: list[pb.AttemptRef] = []
        self._unsent_reports: list[pb.Outcome] = []
        # From the first Welcome, presented on every reconnect: the attempts this worker claimed
        # stay its own (their outcomes are accepted from no other stream).
        self._session_token = ""
        self._reconnect = Reconnect("scheduler stream", logger=log)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float = CONNECT_WAIT_SECONDS) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as error:
            raise SessionLost("not connected to the scheduler") from error

    async def claim(self, ref: AttemptRef) -> pb.Claim:
        """The scheduler's answer; a granted claim's lease is then known to `leases`."""
        await self.wait_connected()
        future: asyncio.Future[pb.Claim] = asyncio.get_running_loop().create_future()
        self._claims[_key(ref)] = future
        self._unsent_claims.append(pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt))
        self._wake_sender.set()
        sent_at = self.leases.now()  # no later than the scheduler starts the lease
        claim = await future
        if claim.granted:
            self.leases.granted(ref, sent_at)
        return claim

    async def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        await self.wait_connected()
        future: asyncio.Future[pb.OutcomeAck] = asyncio.get_running_loop().create_future()
        self._reports[_key(outcome.attempt)] = future
        self._unsent_reports.append(outcome)
        self._wake_sender.set()
        return await future

    def log(self, ref: AttemptRef, text: str, truncated: bool = False) -> bool:
        """Queue an output line of an attempt, sent with the next batch; False if it was dropped
        because the buffer is full. A line flagged `truncated` (the marker saying the attempt's
        output was cut, one per attempt) is always queued."""
        full = self._unsent_log_lines >= MAX_UNSENT_LOG_LINES or self._unsent_log_bytes >= MAX_UNSENT_LOG_BYTES
        if full and not truncated:
            return False
        line = run_pb2.LogLine(attempt=ref.attempt, text=text)
        line.time.GetCurrentTime()
        size = len(text) + LINE_OVERHEAD_BYTES
        last = self._unsent_logs[-1] if self._unsent_logs else None
        if (
            last is not None
            and last.attempt.run_id == ref.run_id
            and last.attempt.attempt == ref.attempt
            and self._last_entry_bytes + size <= MAX_ENTRY_BYTES
        ):
            last.lines.append(line)  # consecutive lines of one attempt share one entry
            self._last_entry_bytes += size
        else:
            last = pb.AttemptLog(attempt=pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt), lines=[line])
            self._unsent_logs.append(last)
            self._last_entry_bytes = size
        last.truncated = last.truncated or truncated
        self._unsent_log_lines += 1
        self._unsent_log_bytes += size
        self._wake_sender.set()
        return True

    async def run_forever(self) -> None:
        while True:
            lost: BaseException = SessionLost("the scheduler ended the stream")
            try:
                await self._run_once()
            except (grpc.RpcError, SessionLost, OSError) as error:
                lost = error
            finally:  # before the wait: what is pending fails now, not after it
                self._connected.clear()
                self._fail_pending(SessionLost("the scheduler stream was lost"))
            await self._reconnect.failed(lost, _describe(lost))

    async def _run_once(self) -> None:
        token = await self._tokens.token()
        async with aio_channel(self._address, self._tls) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            call = stub.Connect(metadata=(("authorization", f"Bearer {token}"),))
            hello = pb.Hello(session_token=self._session_token, consumer_down=self._consumer_down)
            hello.MergeFrom(self._hello)
            await call.write(pb.ConnectRequest(hello=hello))
            welcome = await call.read()
            if not isinstance(welcome, pb.ConnectResponse) or welcome.WhichOneof("message") != "welcome":
                raise SessionLost("the scheduler did not welcome this worker")
            self._session_token = welcome.welcome.session_token
            lease = welcome.welcome.lease.ToTimedelta().total_seconds()
            self._heartbeat_interval = max(0.2, lease / 3)
            self.leases.lease_seconds = lease
            self._beats.clear()
            log.info("connected to scheduler at %s (lease %.1fs)", self._address, lease)
            self._reconnect.connected()
            self._connected.set()
            tasks = {
                asyncio.create_task(self._send_loop(call)),
                asyncio.create_task(self._read_loop(call)),
                asyncio.create_task(self._heartbeat_clock()),
            }
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            call.cancel()
            for task in done:
                task.result()

    async def _send_loop(self, call: aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]) -> None:
        """The stream's only writer: gRPC allows one write in flight per call."""
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            if self._heartbeat_due:
                self._heartbeat_due = False
                await call.write(pb.ConnectRequest(heartbeat=self._next_heartbeat()))
            # Logs before reports: an attempt's lines all precede its outcome on the stream.
            if self._unsent_logs:
                logs, self._unsent_logs = self._unsent_logs, []
                self._unsent_log_lines = self._unsent_log_bytes = 0
                for batch in _log_batches(logs):
                    await call.write(pb.ConnectRequest(logs=pb.AppendLogs(attempts=batch)))
            if self._unsent_claims:
                claims, self._unsent_claims = self._unsent_claims, []
                await call.write(pb.ConnectRequest(claim=pb.ClaimRuns(attempts=claims)))
            if self._unsent_reports:
                reports, self._unsent_reports = self._unsent_reports, []
                await call.write(pb.ConnectRequest(report=pb.ReportOutcomes(outcomes=reports)))

    def _next_heartbeat(self) -> pb.Heartbeat:
        refs = self._held.executing()
        now = self.leases.now()
        self._beat_sequence += 1
        self._beats[self._beat_sequence] = (now, refs)
        for sequence, (sent_at, _) in list(self._beats.items()):  # unanswered, and too old to matter
            if sent_at < now - self.leases.lease_seconds:
                del self._beats[sequence]
        attempts = [pb.AttemptRef(run_id=r.run_id, attempt=r.attempt) for r in refs]
        return pb.Heartbeat(attempts=attempts, sequence=self._beat_sequence, consumer_down=self._consumer_down)

    def consumer_changed(self, consuming: bool) -> None:
        """The RabbitMQ consumer started or stopped taking work: tell the scheduler now (a
        heartbeat out of turn), so that waiting reasons and ListWorkers see it."""
        if self._consumer_down != (not consuming):
            self._consumer_down = not consuming
            self._heartbeat_due = True
            self._wake_sender.set()

    def _heartbeat_answered(self, answer: pb.HeartbeatResult) -> None:
        lost = [_attempt(ref) for ref in answer.lost]
        sent_at, refs = self._beats.pop(answer.sequence, (0.0, []))
        self.leases.extended((r for r in refs if r not in lost), sent_at)
        for ref in lost:
            self.leases.revoke(ref)
            self._held.stop(ref, "lost")

    async def _heartbeat_clock(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            self._heartbeat_due = True
            self._wake_sender.set()

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
                self._held.stop(_attempt(message.cancel.attempt), "cancelled")
            elif kind == "heartbeat":
                self._heartbeat_answered(message.heartbeat)

    def _fail_pending(self, error: Exception) -> None:
        for pending in (self._claims, self._reports):
            for future in pending.values():
                if not future.done():
                    future.set_exception(error)
            pending.clear()
        self._unsent_claims.clear()
        self._unsent_reports.clear()
        self._unsent_logs.clear()
        self._unsent_log_lines = self._unsent_log_bytes = 0


def _log_batches(entries: list[pb.AttemptLog]) -> Iterator[list[pb.AttemptLog]]:
    """Consecutive entries in messages of at most MAX_LOG_MESSAGE_BYTES (one entry is smaller)."""
    batch: list[pb.AttemptLog] = []
    size = 0
    for entry in entries:
        entry_size = entry.ByteSize()
        if batch and size + entry_size > MAX_LOG_MESSAGE_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


def _resolve(pending: dict[Key, asyncio.Future[T]], key: Key, value: T) -> None:
    future = pending.pop(key, None)
    if future is not None and not future.done():
        future.set_result(value)


def _attempt(ref: pb.AttemptRef) -> AttemptRef:
    return AttemptRef(ref.run_id, ref.attempt)


def _describe(error: BaseException) -> str:
    if isinstance(error, aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or error.__class__.__name__
