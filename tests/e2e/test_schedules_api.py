"""Schedules through the REST gateway: storage, validation, next fire times, pause/resume,
skipped slots and schedule health, and a scheduled run travelling the whole mesh."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import create_job, unique
from tests.support import wait_for

NOOP = {"noop": {}}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": {"cron": {"expression": "61 * * * *"}}}, "job.schedule.cron.expression"),
        (
            {"schedule": {"cron": {"expression": "* * * * *", "timezone": "Nowhere/City"}}},
            "job.schedule.cron.timezone",
        ),
        ({"schedule": {"interval": {"every": "0.5s"}}}, "job.schedule.interval.every"),
        ({"schedule": {"once": {"at": "2001-01-01T00:00:00Z"}}}, "job.schedule.once.at"),
        ({"schedule": {"interval": {"every": "1s"}, "jitter": "-3s"}}, "job.schedule.jitter"),
        ({"schedule": {}}, "job.schedule"),
        ({"retryPolicy": {"maxAttempts": 1000}}, "job.retry_policy.max_attempts"),
        ({"retryPolicy": {"nonRetryableExitCodes": [300]}}, "job.retry_policy.non_retryable_exit_codes"),
        ({"attemptTimeout": "0.2s"}, "job.attempt_timeout"),
    ],
)
def test_bad_schedules_and_policies_are_400_naming_the_field(
    api: httpx.Client, fields: dict[str, Any], field: str
) -> None:
    response = api.post("/api/jobs", json={"name": unique("bad"), "executor": NOOP, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}:")


def test_a_cron_job_in_a_time_zone_shows_its_next_five_fire_times(api: httpx.Client) -> None:
    job = create_job(
        api,
        "kolkata",
        NOOP,
        schedule={"cron": {"expression": "0 9 * * *", "timezone": "Asia/Kolkata"}, "overlapPolicy": "FORBID"},
        retryPolicy={"maxAttempts": 4, "initialBackoff": "2s"},
        attemptTimeout="90s",
    )
    times = [parse_time(t) for t in job["nextFireTimes"]]
    assert len(times) == 5
    assert all((t.hour, t.minute) == (3, 30) for t in times), "09:00 in Kolkata is 03:30 UTC"
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(days=1)] * 4
    assert times[0] > datetime.now(UTC)
    assert job["schedule"]["cron"] == {"expression": "0 9 * * *", "timezone": "Asia/Kolkata"}
    assert job["schedule"]["overlapPolicy"] == "FORBID"
    assert job["retryPolicy"]["maxAttempts"] == 4 and job["retryPolicy"]["initialBackoff"] == "2s"
    assert job["attemptTimeout"] == "90s"
    assert job["paused"] is False
    fetched = api.get(f"/api/jobs/{job['id']}").json()
    assert fetched["nextFireTimes"] == job["nextFireTimes"]


def test_pause_and_resume_are_idempotent_on_both_routes(api: httpx.Client) -> None:
    job = create_job(api, "pausable", NOOP, schedule={"cron": {"expression": "0 0 1 1 *"}})
    for route in (f"/api/jobs/{job['id']}:pause", f"/api/jobs/{job['id']}/pause"):
        paused = api.post(route, json={})
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True and paused.json()["nextFireTimes"] == []
    status = api.get(f"/api/jobs/{job['id']}/status").json()
    assert status["scheduleHealth"]["paused"] is True
    for route in (f"/api/jobs/{job['id']}:resume", f"/api/jobs/{job['id']}/resume"):
        resumed = api.post(route, json={})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["paused"] is False
        assert resumed.json()["nextFireTimes"] == job["nextFireTimes"]
    assert api.post("/api/jobs/0190a4c2-0000-7000-8000-000000000000:pause", json={}).status_code == 404


def test_update_changes_and_removes_the_schedule(api: httpx.Client) -> None:
    job = create_job(api, "changing", NOOP)
    assert job["nextFireTimes"] == [] and "schedule" not in job
    scheduled = api.patch(
        f"/api/jobs/{job['id']}",
        json={"schedule": {"interval": {"every": "3600s", "anchorTime": "2024-01-01T00:15:00Z"}}},
    )
    assert scheduled.status_code == 200, scheduled.text
    times = [parse_time(t) for t in scheduled.json()["nextFireTimes"]]
    assert len(times) == 5 and all((t.minute, t.second) == (15, 0) for t in times)
    bad = api.patch(f"/api/jobs/{job['id']}", json={"schedule": {"interval": {"every": "0s"}}})
    assert bad.status_code == 400 and bad.json()["message"].startswith("job.schedule.interval.every")
    removed = api.patch(f"/api/jobs/{job['id']}?updateMask=schedule,attempt_timeout", json={})
    assert removed.status_code == 200, removed.text
    assert removed.json()["nextFireTimes"] == [] and "schedule" not in removed.json()
    assert "scheduleHealth" not in api.get(f"/api/jobs/{job['id']}/status").json()


def test_skipped_slots_of_a_job(api: httpx.Client) -> None:
    job = create_job(api, "skips", NOOP, schedule={"cron": {"expression": "0 0 1 1 *"}})
    listed = api.get(f"/api/jobs/{job['id']}/skipped-slots", params={"pageSize": 10})
    assert listed.status_code == 200, listed.text
    assert listed.json()["skippedSlots"] == [] and listed.json()["nextPageToken"] == ""
    missing = api.get("/api/jobs/0190a4c2-0000-7000-8000-000000000000/skipped-slots")
    assert missing.status_code == 404
    assert api.get(f"/api/jobs/{job['id']}/skipped-slots", params={"pageToken": "garbage"}).status_code == 400


def test_a_scheduled_run_travels_the_whole_mesh(api: httpx.Client) -> None:
    job = create_job(api, "every-second", NOOP, schedule={"interval": {"every": "1s"}})
    first_slot = parse_time(job["nextFireTimes"][0])

    def succeeded() -> list[dict[str, Any]]:
        runs = api.get(f"/api/jobs/{job['id']}/runs", params={"pageSize": 100}).json()["runs"]
        return [r for r in runs if r["state"] == "SUCCEEDED"]

    runs = wait_for(lambda: len(succeeded()) >= 2 and succeeded(), timeout=30, message="two scheduled runs")
    api.post(f"/api/jobs/{job['id']}:pause", json={})
    assert {r["trigger"] for r in runs} == {"SCHEDULE"}
    slots = sorted(parse_time(r["slotTime"]) for r in runs)
    assert slots[0] >= first_slot
    assert all((s - first_slot) % timedelta(seconds=1) == timedelta(0) for s in slots)
    status = api.get(f"/api/jobs/{job['id']}/status").json()
    health = status["scheduleHealth"]
    assert parse_time(health["lastFireTime"]) >= slots[-1]
    assert health["lastFireLag"].endswith("s") and float(health["lastFireLag"][:-1]) >= 0
    assert health["misfiredSlots"] == "0" and health["skippedSlots"] == "0"
    assert status["lastRun"]["trigger"] == "SCHEDULE"
    api.delete(f"/api/jobs/{job['id']}")
