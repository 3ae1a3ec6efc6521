"""Validation of the job-level policies (retry_policy, attempt_timeout, schedule) and how
UpdateJob's mask selects them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from api_server import validation
from api_server.servicers import _job_changes, _new_schedule, _update_paths
from taskmesh import schedule_policy
from taskmesh.convert import job_to_proto, schedule_health
from taskmesh.records import JobRecord, Replacement
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def _field(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return caught.value.field


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (job_pb2.RetryPolicy(max_attempts=-1), "job.retry_policy.max_attempts"),
        (job_pb2.RetryPolicy(max_attempts=101), "job.retry_policy.max_attempts"),
        (job_pb2.RetryPolicy(initial_backoff=Duration()), "job.retry_policy.initial_backoff"),
        (job_pb2.RetryPolicy(initial_backoff=Duration(seconds=-1)), "job.retry_policy.initial_backoff"),
        (job_pb2.RetryPolicy(backoff_multiplier=0.5), "job.retry_policy.backoff_multiplier"),
        (job_pb2.RetryPolicy(backoff_multiplier=float("nan")), "job.retry_policy.backoff_multiplier"),
        (
            job_pb2.RetryPolicy(initial_backoff=Duration(seconds=10), max_backoff=Duration(seconds=5)),
            "job.retry_policy.max_backoff",
        ),
        (job_pb2.RetryPolicy(max_backoff=Duration(nanos=500_000_000)), "job.retry_policy.max_backoff"),
        (job_pb2.RetryPolicy(jitter=1.5), "job.retry_policy.jitter"),
        (job_pb2.RetryPolicy(jitter=-0.1), "job.retry_policy.jitter"),
        (
            job_pb2.RetryPolicy(non_retryable_http_statuses=[404, 99]),
            "job.retry_policy.non_retryable_http_statuses",
        ),
        (job_pb2.RetryPolicy(non_retryable_http_statuses=[600]), "job.retry_policy.non_retryable_http_statuses"),
        (job_pb2.RetryPolicy(non_retryable_exit_codes=[256]), "job.retry_policy.non_retryable_exit_codes"),
        (job_pb2.RetryPolicy(non_retryable_exit_codes=[-1]), "job.retry_policy.non_retryable_exit_codes"),
    ],
)
def test_retry_policy_errors_name_the_field(policy: job_pb2.RetryPolicy, field: str) -> None:
    assert _field(lambda: validation.retry_policy(policy)) == field


def test_valid_retry_policies() -> None:
    for policy in (
        job_pb2.RetryPolicy(),
        job_pb2.RetryPolicy(max_attempts=1),
        job_pb2.RetryPolicy(
            max_attempts=100,
            initial_backoff=Duration(nanos=100_000_000),
            backoff_multiplier=1.0,
            max_backoff=Duration(seconds=60),
            jitter=1.0,
            non_retryable_http_statuses=[100, 404, 599],
            non_retryable_exit_codes=[0, 2, 255],
        ),
    ):
        assert validation.retry_policy(policy) is policy


def test_attempt_timeout_bounds() -> None:
    assert validation.attempt_timeout(Duration(seconds=1)) == 1.0
    assert validation.attempt_timeout(Duration(seconds=7 * 86_400)) == 7 * 86_400.0
    for bad in (Duration(), Duration(nanos=999_999_999), Duration(seconds=7 * 86_400 + 1), Duration(seconds=-3)):
        assert _field(lambda bad=bad: validation.attempt_timeout(bad)) == "job.attempt_timeout"


def test_update_mask_paths_for_policies() -> None:
    job = job_pb2.Job(
        schedule=job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *")),
        retry_policy=job_pb2.RetryPolicy(max_attempts=4),
        attempt_timeout=Duration(seconds=30),
    )
    # no mask: the populated fields
    assert _update_paths(job, []) == ["schedule", "retry_policy", "attempt_timeout"]
    changes = _job_changes(job, [])
    assert changes.retry_policy == Replacement({"maxAttempts": 4})
    assert changes.attempt_timeout_seconds == Replacement(30.0)
    # a named path whose field is unset clears it
    cleared = _job_changes(job_pb2.Job(), ["retry_policy", "attempt_timeout"])
    assert cleared.retry_policy == Replacement(None) and cleared.attempt_timeout_seconds == Replacement(None)
    assert _new_schedule(job_pb2.Job()).schedule is None
    assert _job_changes(job, ["description"]).retry_policy is None
    mask = FieldMask(paths=["paused"])
    assert _field(lambda: _update_paths(job, list(mask.paths))) == "update_mask"


def test_an_invalid_schedule_in_an_update_names_the_field() -> None:
    job = job_pb2.Job(schedule=job_pb2.Schedule(interval=job_pb2.IntervalSchedule(every=Duration(nanos=5))))
    assert _field(lambda: _new_schedule(job)) == "job.schedule.interval.every"


def _record(**fields: object) -> JobRecord:
    base: dict[str, object] = {
        "id": "0190a4c2-0000-7000-8000-000000000001",
        "name": "n",
        "description": "",
        "executor": {"noop": {}},
        "labels": {},
        "create_time": NOW - timedelta(days=1),
        "update_time": NOW,
    }
    return JobRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_a_scheduled_job_shows_its_next_five_fire_times_and_health() -> None:
    schedule = {"cron": {"expression": "0 * * * *", "timezone": "Asia/Kolkata"}}
    pending = NOW + timedelta(minutes=30)
    job = _record(
        schedule=schedule,
        next_fire_at=pending,
        last_fire_at=pending - timedelta(hours=1),
        last_fire_lag_seconds=0.012,
        misfired_slots=2,
        skipped_slots=7,
        retry_policy={"maxAttempts": 3},
        attempt_timeout_seconds=90.5,
    )
    message = job_to_proto(job)
    times = [t.ToDatetime(tzinfo=UTC) for t in message.next_fire_times]
    assert times == [pending + timedelta(hours=k) for k in range(5)]
    assert message.schedule.cron.timezone == "Asia/Kolkata"
    assert message.retry_policy.max_attempts == 3
    assert message.attempt_timeout.ToTimedelta() == timedelta(seconds=90.5)
    assert message.last_fire_time.ToDatetime(tzinfo=UTC) == pending - timedelta(hours=1)
    health = schedule_health(job)
    assert health is not None
    assert health.next_fire_time.ToDatetime(tzinfo=UTC) == pending
    assert health.last_fire_lag.ToTimedelta() == timedelta(milliseconds=12)
    assert (health.misfired_slots, health.skipped_slots, health.paused) == (2, 7, False)
    # paused: no next fire times; unscheduled: no health
    assert list(job_to_proto(_record(schedule=schedule, next_fire_at=pending, paused=True)).next_fire_times) == []
    assert schedule_health(_record()) is None


def test_interval_next_fire_times_count_from_creation_when_unanchored() -> None:
    created = NOW - timedelta(days=1, milliseconds=250)
    every = schedule_policy.from_json({"interval": {"every": "3600s"}}).with_default_anchor(created)
    first = schedule_policy.next_fire_times(every, NOW, 1)[0]
    job = _record(schedule={"interval": {"every": "3600s"}}, create_time=created, next_fire_at=first)
    times = [t.ToDatetime(tzinfo=UTC) for t in job_to_proto(job).next_fire_times]
    assert times == [first + timedelta(hours=k) for k in range(5)]
    assert first.microsecond == 750_000
