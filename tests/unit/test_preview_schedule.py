"""PreviewSchedule: a schedule's next fire times as the scheduler's policy computes them, with
the field named when the schedule is not acceptable (nothing stored, no collaborator used)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from croniter import croniter

from api_server.servicers import JobServicer
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2, job_service_pb2

SERVICER = JobServicer(cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, None))


def _preview(schedule: job_pb2.Schedule | None, count: int = 0) -> list[datetime]:
    request = job_service_pb2.PreviewScheduleRequest(schedule=schedule, count=count)
    answer = asyncio.run(SERVICER.PreviewSchedule(request, None))
    return [t.ToDatetime(tzinfo=UTC) for t in answer.fire_times]


def test_cron_gives_the_next_slots_five_by_default() -> None:
    before = datetime.now(UTC)
    times = _preview(job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="*/5 * * * *")))
    assert len(times) == 5 and times == sorted(times) and times[0] > before
    assert all(t.minute % 5 == 0 and t.second == 0 for t in times)
    expected = croniter("*/5 * * * *", times[0]).get_next(datetime)
    assert times[1] == expected


def test_an_interval_without_anchor_counts_from_now_and_count_is_honoured() -> None:
    before = datetime.now(UTC)
    every = job_pb2.IntervalSchedule()
    every.every.FromSeconds(60)
    times = _preview(job_pb2.Schedule(interval=every), count=3)
    assert len(times) == 3
    assert before < times[0] <= before + timedelta(seconds=61)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=60)] * 2


@pytest.mark.parametrize(
    ("schedule", "count", "field"),
    [
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="61 * * * *")), 0, "schedule.cron.expression"),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *", timezone="Mars/Base")),
            0,
            "schedule.cron.timezone",
        ),
        (None, 0, "schedule"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *")), 101, "count"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *")), -1, "count"),
    ],
)
def test_unacceptable_input_names_its_field(schedule: job_pb2.Schedule | None, count: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        _preview(schedule, count)
    assert raised.value.field == field
