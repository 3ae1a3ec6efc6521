"""WorkerService.Connect (scheduler.worker_servicer) over a real AttemptLedger on the in-memory
store (scheduler.testing): claims, outcomes, heartbeats and logs through one stream, and the
rules that make a stream the owner of what it claims. Streams are driven without gRPC: the
servicer is a thin adapter, its errors are domain errors (mapped by taskmesh.rpc.errors)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from scheduler.run_telemetry import RunObserver, WorkerRoster
from scheduler.testing import InMemoryStore
from scheduler.worker_servicer import WorkerServicer
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef
from taskmesh.rpc.errors import status_for
from taskmesh.service_errors import AlreadyExists
from taskmesh.states import RunState
from taskmesh.v1 import run_pb2
from taskmesh.v1 import worker_service_pb2 as pb

ANSWER_SECONDS = 5.0


class Stream:
    """One Connect call: requests go in through a queue, responses come out in order."""

    def __init__(self, servicer: WorkerServicer, worker_id: str, token: str = "", slots: int = 4) -> None:
        self._requests: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        self.send(hello=pb.Hello(worker_id=worker_id, slots=slots, session_token=token))
        self._responses = servicer.Connect(self._iterate(), None)
        self.token = ""

    async def _iterate(self) -> AsyncIterator[pb.ConnectRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def open(self) -> Stream:
        welcome = await self.receive("welcome")
        self.token = welcome.welcome.session_token
        return self

    def send(self, **message: object) -> None:
        self._requests.put_nowait(pb.ConnectRequest(**message))  # type: ignore[arg-type]

    async def receive(self, kind: str) -> pb.ConnectResponse:
        response = await asyncio.wait_for(anext(self._responses), ANSWER_SECONDS)
        assert response.WhichOneof("message") == kind, response
        return response

    async def close(self) -> None:
        await self._responses.aclose()


def _ref(ref: AttemptRef) -> pb.AttemptRef:
    return pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt)


def _outcome(ref: AttemptRef, status: pb.Outcome.Status = pb.Outcome.SUCCEEDED) -> pb.Outcome:
    outcome = pb.Outcome(attempt=_ref(ref), status=status)
    if status == pb.Outcome.FAILED:
        outcome.error.CopyFrom(
            run_pb2.RunError(kind=run_pb2.RunError.EXECUTOR_FAILED, message="boom", retryable=True)
        )
    return outcome


class Mesh:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.roster = WorkerRoster()  # wired as scheduler.main does
        ledger = self.store.ledger(lease_seconds=30.0, observers=[RunObserver(self.roster)])
        self.servicer = WorkerServicer(ledger, self.roster)

    def queued(self) -> AttemptRef:
        run_id = new_id()
        self.store.runs.add(run_id)
        return AttemptRef(run_id, 1)

    async def connect(self, worker_id: str = "w1", token: str = "") -> Stream:
        return await Stream(self.servicer, worker_id, token).open()

    async def claim(self, stream: Stream, *refs: AttemptRef | pb.AttemptRef) -> list[pb.Claim]:
        attempts = [r if isinstance(r, pb.AttemptRef) else _ref(r) for r in refs]
        stream.send(claim=pb.ClaimRuns(attempts=attempts))
        return list((await stream.receive("claimed")).claimed.claims)

    async def report(self, stream: Stream, *outcomes: pb.Outcome) -> list[pb.OutcomeAck]:
        stream.send(report=pb.ReportOutcomes(outcomes=outcomes))
        return list((await stream.receive("recorded")).recorded.acks)

    async def heartbeat(self, stream: Stream, *refs: AttemptRef, sequence: int = 1) -> pb.HeartbeatResult:
        stream.send(heartbeat=pb.Heartbeat(attempts=[_ref(r) for r in refs], sequence=sequence))
        return (await stream.receive("heartbeat")).heartbeat


@pytest.fixture
def mesh() -> Mesh:
    return Mesh()


async def test_a_claim_is_granted_with_what_to_execute_and_the_stream_is_counted(mesh: Mesh) -> None:
    ref = mesh.queued()
    stream = await mesh.connect()
    assert [(w.worker_id, w.slots) for w in mesh.roster.loads()] == [("w1", 4)]
    [claim] = await mesh.claim(stream, ref)
    assert [w.busy for w in mesh.roster.loads()] == [1]
    assert claim.granted and claim.execution.job_id == f"job-of-{ref.run_id}"
    assert claim.execution.executor.WhichOneof("kind") == "sleep"
    assert claim.execution.timeout.ToTimedelta().total_seconds() == 60.0
    assert mesh.store.runs.state(ref.run_id) == RunState.RUNNING
    await stream.close()
    assert mesh.roster.loads() == []


async def test_a_batch_answers_each_claim_and_a_bad_reference_fails_only_itself(mesh: Mesh) -> None:
    ok, stale = mesh.queued(), mesh.queued()
    stream = await mesh.connect()
    claims = await mesh.claim(
        stream,
        ok,
        AttemptRef(stale.run_id, 2),
        pb.AttemptRef(run_id="not-a-uuid", attempt=1),
        AttemptRef(new_id(), 1),
    )
    assert [c.granted for c in claims] == [True, False, False, False]
    assert all(c.reason.startswith("not claimable") for c in claims[1:])
    assert mesh.store.runs.batches == [("claim", 3)]  # one statement; the malformed one never reached it


async def test_outcomes_are_recorded_and_a_failure_follows_the_retry_policy(mesh: Mesh) -> None:
    done, retried = mesh.queued(), mesh.queued()
    stream = await mesh.connect()
    await mesh.claim(stream, done, retried)
    acks = await mesh.report(stream, _outcome(done), _outcome(retried, pb.Outcome.FAILED))
    assert [(a.settled, a.recorded) for a in acks] == [(True, True), (True, True)]
    assert mesh.store.runs.state(done.run_id) == RunState.SUCCEEDED
    assert mesh.store.runs.state(retried.run_id) == RunState.RETRY_WAIT
    [again] = await mesh.report(stream, _outcome(done))
    assert again.settled and not again.recorded and again.reason.startswith("stale report")


async def test_a_stream_only_reports_heartbeats_and_logs_attempts_its_session_claimed(mesh: Mesh) -> None:
    ref = mesh.queued()
    owner, other = await mesh.connect("w1"), await mesh.connect("w2")
    await mesh.claim(owner, ref)
    [ack] = await mesh.report(other, _outcome(ref))
    assert ack.settled and not ack.recorded
    assert list((await mesh.heartbeat(other, ref)).lost) == [_ref(ref)]
    line = run_pb2.LogLine(attempt=1, text="not mine")
    other.send(logs=pb.AppendLogs(attempts=[pb.AttemptLog(attempt=_ref(ref), lines=[line])]))
    await mesh.report(other, _outcome(ref))  # answered after the logs before it were stored
    assert mesh.store.logs.lines == [] and mesh.store.runs.state(ref.run_id) == RunState.RUNNING
    assert list((await mesh.heartbeat(owner, ref)).lost) == []


async def test_a_second_stream_for_a_live_worker_id_is_refused_with_already_exists(mesh: Mesh) -> None:
    first = await mesh.connect("w1")
    with pytest.raises(AlreadyExists) as refused:
        await mesh.connect("w1")
    assert status_for(refused.value) == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(AlreadyExists):
        await mesh.connect("w1", token=(await mesh.connect("w9")).token)  # another worker's token
    assert [w.worker_id for w in mesh.roster.loads()] == ["w1", "w9"]
    await first.close()


async def test_a_reconnect_presenting_its_session_token_keeps_its_attempts(mesh: Mesh) -> None:
    ref = mesh.queued()
    first = await mesh.connect("w1")
    await mesh.claim(first, ref)
    second = await mesh.connect("w1", token=first.token)
    assert second.token == first.token
    assert list((await mesh.heartbeat(second, ref)).lost) == []
    [ack] = await mesh.report(second, _outcome(ref))
    assert ack.recorded


async def test_a_new_session_after_a_disconnect_does_not_inherit_the_old_attempts(mesh: Mesh) -> None:
    ref = mesh.queued()
    first = await mesh.connect("w1")
    await mesh.claim(first, ref)
    await first.close()
    await mesh.servicer.settle(timeout=ANSWER_SECONDS)  # the worker id is released
    fresh = await mesh.connect("w1")
    assert fresh.token != first.token
    [ack] = await mesh.report(fresh, _outcome(ref))
    assert ack.settled and not ack.recorded


async def test_a_heartbeat_extends_what_the_session_holds_and_repeats_a_cancel(mesh: Mesh) -> None:
    running, cancelling = mesh.queued(), mesh.queued()
    stream = await mesh.connect()
    await mesh.claim(stream, running, cancelling)
    mesh.store.runs.set_state(cancelling.run_id, RunState.CANCELLING)
    gone = AttemptRef(new_id(), 1)
    answer = await mesh.heartbeat(stream, running, cancelling, gone, sequence=7)
    assert answer.sequence == 7 and list(answer.lost) == [_ref(gone)]
    assert (await stream.receive("cancel")).cancel.attempt == _ref(cancelling)
    assert mesh.store.sessions.held["w1"][0] != ""
    assert {(w.worker_id, w.busy) for w in mesh.roster.loads()} == {("w1", 3)}  # the heartbeat's list


async def test_log_lines_are_stored_before_the_outcome_that_follows_them(mesh: Mesh) -> None:
    ref = mesh.queued()
    stream = await mesh.connect()
    await mesh.claim(stream, ref)
    lines = [run_pb2.LogLine(attempt=1, text=f"line {n}") for n in range(3)]
    stream.send(logs=pb.AppendLogs(attempts=[pb.AttemptLog(attempt=_ref(ref), lines=lines, truncated=True)]))
    await mesh.report(stream, _outcome(ref))
    assert [entry.text for entry in mesh.store.logs.lines] == ["line 0", "line 1", "line 2"]
    assert mesh.store.logs.truncated == {ref} and mesh.store.cache.logs == mesh.store.logs.lines


async def test_a_cancel_is_pushed_to_the_stream_of_the_worker_holding_the_attempt(mesh: Mesh) -> None:
    ref = mesh.queued()
    stream = await mesh.connect("w1")
    mesh.servicer.push_cancel(ref, "someone-else")
    mesh.servicer.push_cancel(ref, "w1")
    assert (await stream.receive("cancel")).cancel.attempt == _ref(ref)


async def test_at_shutdown_streams_end_and_new_ones_are_refused(mesh: Mesh) -> None:
    stream = await mesh.connect()
    await mesh.servicer.close_streams(timeout=ANSWER_SECONDS)
    with pytest.raises(StopAsyncIteration):
        await stream.receive("nothing")
    with pytest.raises(Exception, match="shutting down"):
        await mesh.connect("w2")
