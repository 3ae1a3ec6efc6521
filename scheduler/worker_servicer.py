"""WorkerService.Connect: one stream per worker. Claims, reports, heartbeats and log lines come
in; answers and cancellations go out. Each message is handled in its own task so that batches
from many workers meet in the ledger's group commits.

A stream owns the attempts it claims (see scheduler.sessions): its reports, heartbeats and logs
are accepted for those only. A second stream naming a live worker's id (connected here, or to
any scheduler: worker_sessions in PostgreSQL) is refused unless it presents that worker's
session token (the worker reconnecting), which replaces the old one."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import replace
from datetime import UTC
from typing import Any, Protocol, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.duration_pb2 import Duration

from scheduler.attempts import AttemptLedger
from scheduler.outcomes import AttemptEnding
from scheduler.secret_resolver import NO_SECRETS, SecretResolver
from scheduler.sessions import checked_token, session_key
from taskmesh import parameters
from taskmesh.convert import from_json, to_json
from taskmesh.ids import is_uuid
from taskmesh.limits import MAX_OUTPUT_BYTES
from taskmesh.names import DEFAULT_POOL, EXECUTOR_KINDS, valid_pool_name, valid_task_name
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, LogEntry, RunRecord, WorkerProfile
from taskmesh.redaction import REDACTED
from taskmesh.service_errors import AlreadyExists, InvalidArgument, Unavailable
from taskmesh.states import RunState
from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2_grpc
from taskmesh.v1 import worker_service_pb2 as pb

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext
T = TypeVar("T")

ATTEMPT_STATUS = {
    pb.Outcome.SUCCEEDED: RunState.SUCCEEDED,
    pb.Outcome.FAILED: RunState.FAILED,
    pb.Outcome.CANCELLED: RunState.CANCELLED,
}
_END = pb.ConnectResponse()  # put on a session's outbound queue: the stream ends there
_READER_DONE = pb.ConnectResponse()  # put there when the request reader ended


class StreamObserver(Protocol):
    """Sees workers come and go (scheduler.run_telemetry.WorkerRoster)."""

    def connected(self, worker_id: str, slots: int) -> None: ...
    def disconnected(self, worker_id: str) -> None: ...


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self, ledger: AttemptLedger, streams: StreamObserver, secrets: SecretResolver = NO_SECRETS
    ) -> None:
        self._ledger = ledger
        self._streams = streams
        self._secrets = secrets
        self._sessions: dict[str, _Session] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    def push_cancel(self, ref: AttemptRef, worker_id: str) -> None:
        """Tell the worker holding `ref` to stop it, if that worker is connected here."""
        session = self._sessions.get(worker_id)
        if session is not None:
            session.cancel(ref)

    async def close_streams(self, timeout: float) -> None:
        """At shutdown: answer the claims and reports in flight, then end every stream with OK
        and refuse new ones, so that workers reconnect (to another scheduler) at once."""
        self._closing = True
        await asyncio.gather(*(session.finish(timeout) for session in list(self._sessions.values())))

    async def settle(self, timeout: float) -> None:
        """After the server stopped: let the ended streams release their worker ids."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    async def Connect(
        self, requests: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> AsyncIterator[pb.ConnectResponse]:
        if self._closing:
            raise Unavailable("this scheduler is shutting down")
        hello = await _first_hello(requests)
        token = checked_token(hello.session_token)
        profile = worker_profile(hello)
        session = await self._admit(hello.worker_id, session_key(token), profile)
        extra = {"worker_id": hello.worker_id}
        self._streams.connected(hello.worker_id, hello.slots)
        log.info(
            "worker %s connected (%d slots, pools %s, %d tasks)",
            hello.worker_id,
            hello.slots,
            ",".join(profile.pools),
            len(profile.tasks),
            extra=extra,
        )
        lease = Duration()
        lease.FromNanoseconds(int(self._ledger.lease_seconds * 1e9))
        yield pb.ConnectResponse(welcome=pb.Welcome(lease=lease, session_token=token))
        reader = asyncio.create_task(session.read(requests))
        try:
            async for response in session.responses(reader):
                yield response
        finally:
            reader.cancel()
            session.close()
            if self._sessions.get(hello.worker_id) is session:
                del self._sessions[hello.worker_id]
                self._in_background(self._ledger.close_session(hello.worker_id, session.key))
            self._streams.disconnected(hello.worker_id)
            log.info("worker %s disconnected", hello.worker_id, extra=extra)

    async def _admit(self, worker_id: str, key: str, profile: WorkerProfile) -> _Session:
        """The stream's session; refused while another session of that worker_id is live (here:
        heard from within a lease, so that a stream left half-open by a dead host does not block
        it; elsewhere: holding worker_sessions)."""
        previous = self._sessions.get(worker_id)
        live_here = (
            previous is not None and previous.key != key and previous.heard_within(self._ledger.lease_seconds)
        )
        if live_here or not await self._registered(worker_id, key, profile):
            log.warning("refused a second stream for live worker %s", worker_id, extra={"worker_id": worker_id})
            raise AlreadyExists(
                f"worker {worker_id} is connected on another stream; a reconnect must present its session_token"
            )
        if previous is not None:
            previous.close()  # the worker reconnected before we noticed its old stream died
        session = _Session(worker_id, key, self._ledger, profile, self._secrets)
        self._sessions[worker_id] = session
        return session

    async def _registered(self, worker_id: str, key: str, profile: WorkerProfile) -> bool:
        try:
            return await self._ledger.open_session(worker_id, key, profile)
        except Unavailable as error:
            # Admitted all the same: what it claims is its own whatever its id, and its first
            # heartbeat registers the session once the database answers.
            log.warning("worker %s admitted unregistered: %s", worker_id, error, extra={"worker_id": worker_id})
            return True

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("could not end a worker session (it expires by itself): %r", error)


async def _first_hello(requests: AsyncIterator[pb.ConnectRequest]) -> pb.Hello:
    try:
        first = await anext(requests)
    except StopAsyncIteration as error:
        raise InvalidArgument("hello", "the stream ended before Hello") from error
    if first.WhichOneof("message") != "hello" or not first.hello.worker_id:
        raise InvalidArgument("hello.worker_id", "the first message must be Hello with a worker_id")
    return first.hello


MAX_HELLO_TASKS = 10_000
MAX_HELLO_POOLS = 64


def worker_profile(hello: pb.Hello) -> WorkerProfile:
    """What the Hello says the worker serves, checked: pool and task names become queue names."""
    pools = tuple(dict.fromkeys(hello.pools)) or (DEFAULT_POOL,)
    if len(pools) > MAX_HELLO_POOLS or not all(valid_pool_name(p) for p in pools):
        raise InvalidArgument(
            "hello.pools", f"at most {MAX_HELLO_POOLS} pool names (lowercase letters, digits, '_', '-')"
        )
    tasks = tuple(sorted(set(hello.tasks)))
    if len(tasks) > MAX_HELLO_TASKS or not all(valid_task_name(t) for t in tasks):
        raise InvalidArgument("hello.tasks", f"at most {MAX_HELLO_TASKS} valid task names")
    executors = tuple(sorted(set(hello.executors) & set(EXECUTOR_KINDS)))
    return WorkerProfile(
        pools=pools, executors=executors, tasks=tasks, slots=max(hello.slots, 0), consuming=not hello.consumer_down
    )


async def _each(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """gather(return_exceptions=True); a lone item (the usual message at a low rate) is awaited
    as it is, without a task of its own."""
    pending = list(coros)
    if len(pending) != 1:
        return await asyncio.gather(*pending, return_exceptions=True)
    try:
        return [await pending[0]]
    except Exception as error:
        return [error]


def _well_formed(ref: pb.AttemptRef) -> bool:
    return ref.attempt >= 1 and is_uuid(ref.run_id)


def _ref(ref: pb.AttemptRef) -> AttemptRef:
    return AttemptRef(ref.run_id, ref.attempt)


def _proto_ref(ref: AttemptRef) -> pb.AttemptRef:
    return pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt)


class _Session:
    def __init__(
        self,
        worker_id: str,
        key: str,
        ledger: AttemptLedger,
        profile: WorkerProfile,
        secrets: SecretResolver = NO_SECRETS,
    ) -> None:
        self.worker_id = worker_id
        self.profile = profile
        self.key = key  # session key: owner of the attempts this stream claims
        self._ledger = ledger
        self._secrets = secrets
        self._outbound: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._log_writes: set[asyncio.Task[None]] = set()
        self._log_order = asyncio.Lock()  # batches of one stream are stored in arrival order
        self._finishing = False
        self._heard_at = time.monotonic()

    def heard_within(self, seconds: float) -> bool:
        return time.monotonic() - self._heard_at < seconds

    async def read(self, requests: AsyncIterator[pb.ConnectRequest]) -> None:
        handlers = {
            "claim": lambda r: self._claim(r.claim),
            "report": lambda r: self._report(r.report),
            "heartbeat": lambda r: self._heartbeat(r.heartbeat),
            "logs": lambda r: self._logs(r.logs),
        }
        async for request in requests:
            self._heard_at = time.monotonic()
            if self._finishing:
                continue  # unanswered: the worker sends it again on its next stream
            kind = request.WhichOneof("message") or ""
            handler = handlers.get(kind)
            if handler is not None:
                task = self._spawn(handler(request))
                if kind == "logs":
                    self._log_writes.add(task)
                    task.add_done_callback(self._log_writes.discard)

    async def responses(self, reader: asyncio.Task[None]) -> AsyncIterator[pb.ConnectResponse]:
        """What to send, in order, until the session ends or the reader does (whose error, if
        any, is raised here). One queue read per response: the reader's end is queued too."""
        reader.add_done_callback(lambda _: self._outbound.put_nowait(_READER_DONE))
        while True:
            response = await self._outbound.get()
            if response is _END:
                return
            if response is _READER_DONE:
                reader.result()  # re-raise what ended the reader, if anything
                return
            yield response

    async def finish(self, timeout: float) -> None:
        """Stop taking requests, let those in hand finish (up to `timeout`), then end the stream."""
        self._finishing = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self._outbound.put_nowait(_END)

    def cancel(self, ref: AttemptRef) -> None:
        self._outbound.put_nowait(pb.ConnectResponse(cancel=pb.CancelAttempt(attempt=_proto_ref(ref))))

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _claim(self, message: pb.ClaimRuns) -> None:
        results = await _each(self._claim_one(a) for a in message.attempts)
        claims = [_claim_answer(ref, result) for ref, result in zip(message.attempts, results, strict=True)]
        await self._add_secrets(claims, results)
        await self._outbound.put(pb.ConnectResponse(claimed=pb.ClaimRunsResult(claims=claims)))

    async def _add_secrets(
        self, claims: list[pb.Claim], results: list[ClaimedAttempt | BaseException | None]
    ) -> None:
        executors = [r.executor_json if isinstance(r, ClaimedAttempt) else None for r in results]
        try:
            values = await self._secrets.resolve(executors)
        except Unavailable as error:  # the claims stand: their attempts fail, retryably, on the worker
            for claim, text in zip(claims, executors, strict=True):
                if text and self._secrets.names(text):
                    claim.execution.secrets_error = (
                        f"the secrets of this attempt could not be read: {error.message}"
                    )
            return
        for claim, secrets in zip(claims, values, strict=True):
            claim.execution.secrets.update(secrets)

    async def _claim_one(self, ref: pb.AttemptRef) -> ClaimedAttempt | None:
        if not _well_formed(ref):
            return None  # a malformed reference must not fail the batch it would join
        return await self._ledger.claim(ClaimRequest(_ref(ref), self.worker_id, self.key))

    async def _report(self, message: pb.ReportOutcomes) -> None:
        # An attempt's log lines came before its outcome: store them first, so that a finished
        # run's logs are complete.
        if self._log_writes:
            await asyncio.wait(set(self._log_writes))
        results = await _each(self._report_one(o) for o in message.outcomes)
        acks = [_outcome_ack(o.attempt, result) for o, result in zip(message.outcomes, results, strict=True)]
        await self._outbound.put(pb.ConnectResponse(recorded=pb.ReportOutcomesResult(acks=acks)))

    async def _report_one(self, outcome: pb.Outcome) -> RunRecord | None:
        if not _well_formed(outcome.attempt):
            return None
        ending = AttemptEnding(
            ref=_ref(outcome.attempt),
            worker_id=self.worker_id,
            session=self.key,
            status=ATTEMPT_STATUS.get(outcome.status, RunState.FAILED),
            result=to_json(outcome.result) if outcome.HasField("result") else None,
            error=to_json(outcome.error) if outcome.HasField("error") else None,
            rendered=to_json(redacted(outcome.rendered_request)) if outcome.HasField("rendered_request") else None,
        )
        if outcome.HasField("output"):
            ending = bounded_output(ending, outcome.output)
        return await self._ledger.record(ending)

    async def _heartbeat(self, message: pb.Heartbeat) -> None:
        refs = [_ref(a) for a in message.attempts if _well_formed(a)]
        if self.profile.consuming == message.consumer_down:  # its consumer went down or came back
            self.profile = replace(self.profile, consuming=not message.consumer_down)
        try:
            held = await self._ledger.heartbeat(self.worker_id, self.key, refs, self.profile)
        except Unavailable:
            return  # leases are not extended; the worker heartbeats again soon
        lost = [r for r in refs if r not in held]
        await self._outbound.put(
            pb.ConnectResponse(
                heartbeat=pb.HeartbeatResult(lost=[_proto_ref(r) for r in lost], sequence=message.sequence)
            )
        )
        for ref, state in held.items():
            if state == RunState.CANCELLING:  # in case the NOTIFY push was missed
                self.cancel(ref)

    async def _logs(self, message: pb.AppendLogs) -> None:
        entries = [
            LogEntry(_ref(item.attempt), line.time.ToDatetime(tzinfo=UTC), line.text)
            for item in message.attempts
            if _well_formed(item.attempt)
            for line in item.lines
        ]
        if not entries:
            return
        truncated = [
            _ref(item.attempt) for item in message.attempts if item.truncated and _well_formed(item.attempt)
        ]
        try:
            async with self._log_order:
                await self._ledger.append_logs(self.worker_id, self.key, entries, truncated)
        except Unavailable as error:
            log.warning("dropped %d log lines from %s: %s", len(entries), self.worker_id, error)


def bounded_output(ending: AttemptEnding, output: struct_pb2.Value) -> AttemptEnding:
    """The ending with its output as JSON text; an output over MAX_OUTPUT_BYTES (the worker
    refuses those itself) fails the attempt for good instead."""
    text = parameters.dumps(parameters.from_value(output))
    if len(text) <= MAX_OUTPUT_BYTES // 4 or len(text.encode()) <= MAX_OUTPUT_BYTES:
        return replace(ending, output_json=text)
    message = f"the output is {len(text.encode())} bytes of JSON, more than the {MAX_OUTPUT_BYTES} allowed"
    error = {"kind": "EXECUTOR_FAILED", "message": message, "retryable": False}
    return replace(ending, status=RunState.FAILED, error=error)


def redacted(rendered: run_pb2.RenderedRequest) -> run_pb2.RenderedRequest:
    """Header and env values as REDACTED, whatever the worker sent (it redacts them itself)."""
    for values in (rendered.http.headers, rendered.shell.env):
        for name in list(values):
            values[name] = REDACTED
    return rendered


def _claim_answer(ref: pb.AttemptRef, result: ClaimedAttempt | BaseException | None) -> pb.Claim:
    claim = pb.Claim(attempt=ref)
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
        claim.execution.executor.MergeFromString(_executor_bytes(result.executor_json))
        claim.execution.timeout.FromNanoseconds(int(result.timeout_seconds * 1e9))
        if result.run.parameters:
            claim.execution.parameters.update(result.run.parameters)
        if result.run.slot_time is not None:
            claim.execution.slot_time.FromDatetime(result.run.slot_time)
    return claim


_EXECUTORS: dict[str, bytes] = {}
MAX_CACHED_EXECUTORS = 4096


def _executor_bytes(executor_json: str) -> bytes:
    """Serialized taskmesh.v1.Executor from its JSON text; runs of a job share it, so parse once."""
    cached = _EXECUTORS.get(executor_json)
    if cached is None:
        if len(_EXECUTORS) >= MAX_CACHED_EXECUTORS:
            _EXECUTORS.clear()
        cached = from_json(json.loads(executor_json), job_pb2.Executor).SerializeToString()
        _EXECUTORS[executor_json] = cached
    return cached


def _outcome_ack(ref: pb.AttemptRef, result: RunRecord | BaseException | None) -> pb.OutcomeAck:
    ack = pb.OutcomeAck(attempt=ref)
    if isinstance(result, BaseException):
        if not isinstance(result, Unavailable):
            log.error("report of %s failed: %r", ref.run_id, result, extra={"run_id": ref.run_id})
        ack.reason = "not recorded yet; report again"
    elif result is None:
        ack.settled = True
        ack.reason = "stale report: the attempt is no longer this worker's"
    else:
        ack.settled = True
        ack.recorded = True
    return ack
