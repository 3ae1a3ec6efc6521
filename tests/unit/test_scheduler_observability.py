"""What the scheduler computes from claims, outcomes, heartbeats and expiries: run counters and
latency histograms, the workers' busy slots, and the gauges of its metrics endpoint."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from scheduler.health_and_metrics import SchedulerCollector
from scheduler.outcomes import AttemptEnding
from scheduler.run_telemetry import RunObserver, WorkerRoster
from taskmesh.broker.probe import QueueDepth
from taskmesh.db.probes import DatabaseGauges
from taskmesh.ids import new_id
from taskmesh.metrics import Sampler
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, RunRecord
from taskmesh.states import RunState, Trigger

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _run(state: RunState, attempt: int = 1, run_id: str | None = None, **fields: object) -> RunRecord:
    return RunRecord(
        id=run_id or new_id(),
        job_id="job-1",
        job_name="job",
        state=state,
        attempt=attempt,
        trigger=Trigger.MANUAL,
        version=2,
        queue_time=T0,
        **fields,  # type: ignore[arg-type]
    )


def _history(attempt: int, state: str, seconds: float, worker: str = "w1") -> dict[str, object]:
    start = T0 + timedelta(seconds=1)
    return {
        "attempt": attempt,
        "worker_id": worker,
        "state": state,
        "start_time": start.isoformat(),
        "finish_time": (start + timedelta(seconds=seconds)).isoformat(),
    }


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _claim(observer: RunObserver, worker: str, run: RunRecord, executor: dict[str, object]) -> None:
    observer.claimed(
        [ClaimRequest(AttemptRef(run.id, run.attempt), worker, f"s-{worker}")],
        [ClaimedAttempt(run, json.dumps(executor), 60.0)],
    )


def _ending(run: RunRecord, worker: str, status: RunState) -> AttemptEnding:
    return AttemptEnding(AttemptRef(run.id, run.attempt), worker, f"s-{worker}", status, None, None)


def test_a_run_is_timed_from_queue_to_claim_and_counted_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    roster = WorkerRoster()
    observer = RunObserver(roster)
    roster.connected("w1", 4)
    claimed = _run(RunState.RUNNING, start_time=T0 + timedelta(seconds=0.3))
    started = _value("taskmesh_run_trigger_to_start_seconds_count", executor="http")
    latency = _value("taskmesh_run_trigger_to_start_seconds_sum", executor="http")
    finished = _value("taskmesh_runs_finished_total", state="SUCCEEDED", executor="http")
    executed = _value("taskmesh_attempt_execution_seconds_sum", executor="http", state="SUCCEEDED")

    with caplog.at_level(logging.INFO, logger="scheduler.run_telemetry"):
        _claim(observer, "w1", claimed, {"http": {"url": "https://example.com"}})
        assert roster.loads()[0].busy == 1
        done = _run(RunState.SUCCEEDED, run_id=claimed.id, attempts=[_history(1, "SUCCEEDED", 2.5)])
        observer.ended([_ending(claimed, "w1", RunState.SUCCEEDED)], [done])

    assert _value("taskmesh_run_trigger_to_start_seconds_count", executor="http") == started + 1
    assert _value("taskmesh_run_trigger_to_start_seconds_sum", executor="http") == pytest.approx(latency + 0.3)
    assert _value("taskmesh_runs_finished_total", state="SUCCEEDED", executor="http") == finished + 1
    assert _value("taskmesh_attempt_execution_seconds_sum", executor="http", state="SUCCEEDED") == pytest.approx(
        executed + 2.5
    )
    assert roster.loads()[0].busy == 0
    lines = [(r.getMessage(), r.run_id, r.attempt, r.job_id) for r in caplog.records]  # type: ignore[attr-defined]
    assert lines == [
        ("attempt 1 claimed by w1", claimed.id, 1, "job-1"),
        ("attempt 1 ended; run SUCCEEDED", claimed.id, 1, "job-1"),
    ]


def test_a_retried_attempt_is_timed_but_the_run_is_not_finished(caplog: pytest.LogCaptureFixture) -> None:
    observer = RunObserver(WorkerRoster())
    run = _run(RunState.RUNNING, start_time=T0)
    _claim(observer, "w1", run, {"shell": {"argv": ["false"]}})
    failed_runs = _value("taskmesh_runs_finished_total", state="FAILED", executor="shell")
    failed_attempts = _value("taskmesh_attempt_execution_seconds_count", executor="shell", state="FAILED")
    waiting = _run(
        RunState.RETRY_WAIT,
        run_id=run.id,
        attempts=[_history(1, "FAILED", 1.0)],
        error={"kind": "EXECUTOR_FAILED", "message": "exit code 1"},
        retry_at=T0 + timedelta(seconds=5),
    )
    with caplog.at_level(logging.INFO, logger="scheduler.run_telemetry"):
        observer.ended([_ending(run, "w1", RunState.FAILED)], [waiting])
    assert _value("taskmesh_runs_finished_total", state="FAILED", executor="shell") == failed_runs
    assert (
        _value("taskmesh_attempt_execution_seconds_count", executor="shell", state="FAILED") == failed_attempts + 1
    )
    assert "attempt 1 failed (EXECUTOR_FAILED: exit code 1); retry at 2030-01-01T00:00:05+00:00" in caplog.messages

    # the second attempt is no first attempt: no trigger-to-start sample; its failure ends the run
    started = _value("taskmesh_run_trigger_to_start_seconds_count", executor="shell")
    second = _run(RunState.RUNNING, attempt=2, run_id=run.id, start_time=T0 + timedelta(seconds=9))
    _claim(observer, "w2", second, {"shell": {"argv": ["false"]}})
    assert _value("taskmesh_run_trigger_to_start_seconds_count", executor="shell") == started
    final = _run(
        RunState.FAILED, attempt=2, run_id=run.id, attempts=[_history(1, "FAILED", 1), _history(2, "FAILED", 1)]
    )
    observer.ended([_ending(second, "w2", RunState.FAILED)], [final])
    assert _value("taskmesh_runs_finished_total", state="FAILED", executor="shell") == failed_runs + 1


def test_a_refused_report_and_an_unknown_run_are_handled(caplog: pytest.LogCaptureFixture) -> None:
    observer = RunObserver(WorkerRoster())
    stale = _run(RunState.RUNNING)
    with caplog.at_level(logging.INFO, logger="scheduler.run_telemetry"):
        observer.ended([_ending(stale, "w9", RunState.SUCCEEDED)], [None])
    assert caplog.records[0].getMessage().startswith("report of attempt 1 by w9 refused")
    # claimed by another scheduler before a restart: counted with executor "unknown"
    before = _value("taskmesh_runs_finished_total", state="CANCELLED", executor="unknown")
    observer.ended([_ending(stale, "w9", RunState.CANCELLED)], [_run(RunState.CANCELLED, run_id=stale.id)])
    assert _value("taskmesh_runs_finished_total", state="CANCELLED", executor="unknown") == before + 1


def test_reaped_attempts_release_their_worker_and_count() -> None:
    roster = WorkerRoster()
    observer = RunObserver(roster)
    roster.connected("w1", 2)
    run = _run(RunState.RUNNING, start_time=T0)
    _claim(observer, "w1", run, {"sleep": {"seconds": 60}})
    before = _value("taskmesh_runs_finished_total", state="FAILED", executor="sleep")
    observer.reaped([_run(RunState.FAILED, run_id=run.id, attempts=[_history(1, "FAILED", 30, "w1")])])
    assert roster.loads()[0].busy == 0
    assert _value("taskmesh_runs_finished_total", state="FAILED", executor="sleep") == before + 1


def test_the_roster_counts_streams_and_trusts_heartbeats() -> None:
    roster = WorkerRoster()
    roster.connected("w1", 8)
    roster.connected("w1", 8)  # reconnected before the old stream was noticed gone
    roster.claimed("w1", AttemptRef("r1", 1))
    roster.claimed("w1", AttemptRef("r2", 1))
    roster.claimed("nobody", AttemptRef("r3", 1))  # not connected here: ignored
    roster.disconnected("w1")
    assert [(w.worker_id, w.slots, w.busy) for w in roster.loads()] == [("w1", 8, 2)]
    roster.heartbeat("w1", [AttemptRef("r2", 1), AttemptRef("r4", 2)])
    roster.released("w1", AttemptRef("r2", 1))
    assert roster.loads()[0].busy == 1
    roster.disconnected("w1")
    assert roster.loads() == []


def test_the_collector_reports_workers_queues_and_database_gauges() -> None:
    roster = WorkerRoster()
    roster.connected("w1", 16)
    roster.claimed("w1", AttemptRef("r1", 1))
    queues: Sampler[dict[str, QueueDepth]] = Sampler("q", _never, 1)
    database: Sampler[DatabaseGauges] = Sampler("d", _never, 1)
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(roster, queues, database))
    assert registry.get_sample_value("taskmesh_workers_connected") == 1
    assert registry.get_sample_value("taskmesh_connected_worker_busy_slots", {"worker": "w1"}) == 1
    assert registry.get_sample_value("taskmesh_queue_messages", {"queue": "ns.runs"}) is None  # not sampled yet
    queues.value = {"ns.runs": QueueDepth(7, 2), "ns.runs.dead": QueueDepth(1, 0)}
    database.value = DatabaseGauges(outbox_backlog=3, active_leases=5)
    assert registry.get_sample_value("taskmesh_queue_messages", {"queue": "ns.runs"}) == 7
    assert registry.get_sample_value("taskmesh_queue_consumers", {"queue": "ns.runs"}) == 2
    assert registry.get_sample_value("taskmesh_queue_messages", {"queue": "ns.runs.dead"}) == 1
    assert registry.get_sample_value("taskmesh_outbox_backlog") == 3
    assert registry.get_sample_value("taskmesh_active_leases") == 5


async def _never() -> QueueDepth:
    raise AssertionError("not sampled in this test")
