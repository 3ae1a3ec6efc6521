"""The worker's scheduler stream (worker.session) against an in-process fake scheduler
(worker.testing, a real grpc.aio server on loopback): claims, reports and log lines batched
into few messages, heartbeats built from what the worker executes, stops pushed back to it, and
a reconnect that presents the session token of the first Welcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from taskmesh.ids import new_id
from taskmesh.records import AttemptRef
from taskmesh.v1 import worker_service_pb2 as pb
from tests.support import eventually
from worker.session import SchedulerSession, SessionLost
from worker.testing import FakeScheduler, StaticTokens, serving

ANSWER_SECONDS = 10.0


class Held:
    """worker.session.HeldAttempts: what the pipeline would say it executes, and stops it got."""

    def __init__(self) -> None:
        self.refs: list[AttemptRef] = []
        self.stops: list[tuple[AttemptRef, str]] = []

    def executing(self) -> list[AttemptRef]:
        return list(self.refs)

    def stop(self, ref: AttemptRef, reason: str) -> None:
        self.stops.append((ref, reason))


@contextlib.asynccontextmanager
async def connected(fake: FakeScheduler, held: Held) -> AsyncIterator[SchedulerSession]:
    async with serving(fake) as address:
        session = SchedulerSession(address, StaticTokens(), pb.Hello(worker_id="w", slots=4), held)
        task = asyncio.create_task(session.run_forever())
        try:
            await session.wait_connected(ANSWER_SECONDS)
            yield session
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _refs(count: int) -> list[AttemptRef]:
    return [AttemptRef(new_id(), 1) for _ in range(count)]


def _outcome(ref: AttemptRef) -> pb.Outcome:
    return pb.Outcome(attempt=pb.AttemptRef(run_id=ref.run_id, attempt=ref.attempt), status=pb.Outcome.SUCCEEDED)


@pytest.fixture
def fake() -> FakeScheduler:
    return FakeScheduler()


async def test_claims_made_together_travel_in_few_messages_and_each_gets_its_answer(fake: FakeScheduler) -> None:
    refs = _refs(20)
    fake.refused.add(refs[-1])
    async with connected(fake, Held()) as session:
        claims = await asyncio.gather(*(session.claim(ref) for ref in refs))
        assert [c.granted for c in claims] == [True] * 19 + [False]
        assert [c.attempt.run_id for c in claims] == [r.run_id for r in refs]
        assert all(session.leases.valid(ref) for ref in refs[:-1]) and not session.leases.valid(refs[-1])
    messages = fake.of_kind("claim")
    assert sum(len(m.claim.attempts) for m in messages) == 20
    assert len(messages) < 20


async def test_reports_made_together_travel_in_few_messages(fake: FakeScheduler) -> None:
    refs = _refs(10)
    async with connected(fake, Held()) as session:
        acks = await asyncio.gather(*(session.report(_outcome(ref)) for ref in refs))
    assert all(a.settled and a.recorded for a in acks)
    assert [a.attempt.run_id for a in acks] == [r.run_id for r in refs]
    assert len(fake.of_kind("report")) < 10


async def test_log_lines_share_entries_and_precede_the_outcome_on_the_stream(fake: FakeScheduler) -> None:
    [ref] = _refs(1)
    async with connected(fake, Held()) as session:
        for n in range(3):
            assert session.log(ref, f"line {n}")
        await session.report(_outcome(ref))
    kinds = [r.WhichOneof("message") for r in fake.requests if r.WhichOneof("message") != "heartbeat"]
    assert kinds == ["logs", "report"]
    [logs] = fake.of_kind("logs")
    [entry] = logs.logs.attempts
    assert [line.text for line in entry.lines] == ["line 0", "line 1", "line 2"]


async def test_heartbeats_list_what_the_worker_executes_and_a_lost_attempt_is_stopped() -> None:
    fake, held = FakeScheduler(lease_seconds=0.6), Held()  # a heartbeat every 0.2 s
    kept, lost = _refs(2)
    fake.lost.add(lost)
    async with connected(fake, held) as session:
        await asyncio.gather(session.claim(kept), session.claim(lost))
        held.refs = [kept, lost]
        await eventually(lambda: (lost, "lost") in held.stops, "the lost attempt stopped")
        assert not session.leases.valid(lost)
        assert session.leases.valid(kept)
    beats = [m.heartbeat for m in fake.of_kind("heartbeat")]
    assert any({a.run_id for a in b.attempts} == {kept.run_id, lost.run_id} for b in beats)
    assert [b.sequence for b in beats] == list(range(1, len(beats) + 1))
    assert (kept, "lost") not in held.stops


async def test_a_cancel_from_the_scheduler_stops_the_attempt(fake: FakeScheduler) -> None:
    held = Held()
    [ref] = _refs(1)
    async with connected(fake, held):
        fake.cancel(ref)
        await eventually(lambda: held.stops == [(ref, "cancelled")], "the cancel reached the pipeline")


async def test_a_lost_stream_fails_what_waits_and_the_reconnect_presents_the_session_token(
    fake: FakeScheduler,
) -> None:
    before, after = _refs(2)
    async with connected(fake, Held()) as session:
        fake.answering.clear()  # the claim is received but not answered
        pending = asyncio.create_task(session.claim(before))
        await eventually(lambda: fake.of_kind("claim"), "the claim reached the scheduler")
        fake.drop()
        with pytest.raises(SessionLost):
            await pending
        fake.answering.set()
        await eventually(lambda: len(fake.hellos) == 2 and session.connected, "the session reconnected")
        claim = await session.claim(after)
    assert claim.granted
    first, second = fake.hellos
    assert first.session_token == "" and second.session_token == "token-1"
    assert second.worker_id == "w" and second.slots == 4
    sent = [a.run_id for m in fake.of_kind("claim") for a in m.claim.attempts]
    assert sent == [before.run_id, after.run_id]  # what failed is not sent again by the session


async def test_nothing_is_claimed_while_the_scheduler_is_out_of_reach() -> None:
    session = SchedulerSession("127.0.0.1:1", StaticTokens(), pb.Hello(worker_id="w"), Held())
    with pytest.raises(SessionLost):
        await session.wait_connected(timeout=0.05)


async def test_a_consumer_that_stops_or_starts_is_told_to_the_scheduler_at_once(fake: FakeScheduler) -> None:
    """A heartbeat out of turn (the fake's lease is long: none would be due for seconds)."""
    async with connected(fake, Held()) as session:
        session.consumer_changed(False)
        await eventually(lambda: any(m.heartbeat.consumer_down for m in fake.of_kind("heartbeat")), "down")
        session.consumer_changed(True)
        await eventually(lambda: not fake.of_kind("heartbeat")[-1].heartbeat.consumer_down, "up again")
        beats = len(fake.of_kind("heartbeat"))
        session.consumer_changed(True)  # no change: nothing sent
    assert len(fake.of_kind("heartbeat")) == beats
    assert not fake.hellos[0].consumer_down  # counted as consuming until told otherwise
