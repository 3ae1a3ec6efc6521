"""The AttemptLedger (scheduler.attempts) on the in-memory store (scheduler.testing): concurrent
claims and reports meet in one statement each, every caller gets its own answer, observers and
the status cache see each committed batch once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from scheduler.outcomes import AttemptEnding
from scheduler.testing import InMemoryStore
from taskmesh.ids import new_id
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, LogEntry, OutcomeReport, RunRecord
from taskmesh.service_errors import DatabaseUnavailable
from taskmesh.states import RunState


class Recorder:
    """A LedgerObserver that keeps what it was shown."""

    def __init__(self) -> None:
        self.claims: list[int] = []
        self.endings: list[int] = []
        self.heartbeats: list[tuple[str, list[AttemptRef]]] = []

    def claimed(self, requests: Sequence[ClaimRequest], claimed: Sequence[ClaimedAttempt | None]) -> None:
        self.claims.append(len(requests))

    def ended(self, endings: Sequence[AttemptEnding], recorded: Sequence[RunRecord | None]) -> None:
        self.endings.append(len(endings))

    def heartbeat(self, worker_id: str, refs: Sequence[AttemptRef]) -> None:
        self.heartbeats.append((worker_id, list(refs)))


def _queued(store: InMemoryStore, count: int, **fields: object) -> list[AttemptRef]:
    refs = [AttemptRef(new_id(), 1) for _ in range(count)]
    for ref in refs:
        store.runs.add(ref.run_id, **fields)  # type: ignore[arg-type]
    return refs


def _ending(ref: AttemptRef, status: RunState = RunState.SUCCEEDED, session: str = "s1") -> AttemptEnding:
    error = (
        {"kind": "EXECUTOR_FAILED", "message": "boom", "retryable": True} if status == RunState.FAILED else None
    )
    return AttemptEnding(ref, "w1", session, status, None, error)


async def test_concurrent_claims_share_one_statement_and_each_gets_its_answer() -> None:
    store, observer = InMemoryStore(), Recorder()
    ledger = store.ledger(observers=[observer])
    refs = _queued(store, 50)
    stale = AttemptRef(refs[0].run_id, 2)
    results = await asyncio.gather(*(ledger.claim(ClaimRequest(r, "w1", "s1")) for r in [*refs, stale]))
    assert store.runs.batches == [("claim", 51)]
    assert [c.run.id if c else None for c in results] == [*(r.run_id for r in refs), None]
    assert observer.claims == [51]
    assert sorted(run.id for run in store.cache.runs) == sorted(r.run_id for r in refs)


async def test_reports_share_one_statement_and_only_failures_read_their_retry_policy() -> None:
    store, observer = InMemoryStore(), Recorder()
    ledger = store.ledger(observers=[observer])
    done = _queued(store, 3)
    [retried] = _queued(store, 1)
    [final] = _queued(store, 1, retry_policy={"maxAttempts": 1})
    for ref in [*done, retried, final]:
        await ledger.claim(ClaimRequest(ref, "w1", "s1"))
    store.runs.batches.clear()
    endings = [*(_ending(r) for r in done), _ending(retried, RunState.FAILED), _ending(final, RunState.FAILED)]
    recorded = await asyncio.gather(*(ledger.record(e) for e in endings))
    assert store.runs.batches == [("retry_policies", 2), ("record_outcomes", 5)]
    assert [r.state if r else None for r in recorded] == [
        *[RunState.SUCCEEDED] * 3,
        RunState.RETRY_WAIT,
        RunState.FAILED,
    ]
    assert observer.endings == [5]


async def test_a_report_from_another_session_is_refused_without_failing_its_batch() -> None:
    store = InMemoryStore()
    ledger = store.ledger()
    mine, theirs = _queued(store, 2)
    await ledger.claim(ClaimRequest(mine, "w1", "s1"))
    await ledger.claim(ClaimRequest(theirs, "w1", "s2"))
    recorded = await asyncio.gather(ledger.record(_ending(mine)), ledger.record(_ending(theirs)))
    assert [r is not None for r in recorded] == [True, False]
    assert store.runs.state(theirs.run_id) == RunState.RUNNING


async def test_a_batch_the_database_refuses_fails_every_caller_in_it() -> None:
    store = InMemoryStore()

    async def refuse(reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
        raise DatabaseUnavailable("PostgreSQL is out of reach")

    store.runs.record_outcomes = refuse  # type: ignore[method-assign]
    ledger = store.ledger()
    refs = _queued(store, 2)
    results = await asyncio.gather(*(ledger.record(_ending(r)) for r in refs), return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results)
    assert store.cache.runs == []


async def test_a_heartbeat_keeps_the_session_and_extends_only_what_it_holds() -> None:
    store, observer = InMemoryStore(), Recorder()
    ledger = store.ledger(lease_seconds=30.0, observers=[observer])
    held, other = _queued(store, 2)
    await ledger.claim(ClaimRequest(held, "w1", "s1"))
    assert await ledger.heartbeat("w1", "s1", []) == {}
    assert ("extend_leases", 0) not in store.runs.batches  # nothing to extend: no statement
    assert await ledger.heartbeat("w1", "s1", [held, other]) == {held: RunState.RUNNING}
    assert observer.heartbeats == [("w1", []), ("w1", [held, other])]
    assert store.sessions.held["w1"][0] == "s1"


async def test_one_live_session_per_worker_id_until_it_is_closed() -> None:
    store = InMemoryStore()
    ledger = store.ledger()
    assert await ledger.open_session("w1", "s1")
    assert not await ledger.open_session("w1", "s2")
    assert await ledger.open_session("w1", "s1")  # the same session again (a heartbeat renews it)
    await ledger.close_session("w1", "s2")  # not its session: nothing happens
    assert not await ledger.open_session("w1", "s2")
    await ledger.close_session("w1", "s1")
    assert await ledger.open_session("w1", "s2")


async def test_log_lines_are_written_through_once_stored() -> None:
    store = InMemoryStore()
    ledger = store.ledger()
    [ref] = _queued(store, 1)
    await ledger.claim(ClaimRequest(ref, "w1", "s1"))
    line = LogEntry(ref, datetime.now(UTC), "hello")
    await ledger.append_logs("w1", "s2", [line])  # not the owner's session: dropped
    await ledger.append_logs("w1", "s1", [line], truncated=[ref])
    assert store.logs.lines == [line] == store.cache.logs and store.logs.truncated == {ref}


@pytest.mark.parametrize("status", [RunState.SUCCEEDED, RunState.CANCELLED])
async def test_an_ending_other_than_failure_reads_no_policy(status: RunState) -> None:
    store = InMemoryStore()
    ledger = store.ledger()
    [ref] = _queued(store, 1)
    await ledger.claim(ClaimRequest(ref, "w1", "s1"))
    run = await ledger.record(_ending(ref, status))
    assert run is not None and run.state == status
    assert ("retry_policies", 1) not in store.runs.batches
