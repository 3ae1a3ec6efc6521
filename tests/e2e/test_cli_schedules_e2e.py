"""`taskmesh jobs` schedule commands as a subprocess against the live mesh: schedule and retry
flags round-tripping, pause/resume, schedule health and skipped slots."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from taskmesh.client import TaskmeshClient
from taskmesh.v1 import job_service_pb2, run_pb2
from tests.e2e.cli import Taskmesh, as_json, fields, ok
from tests.e2e.helpers import unique
from tests.support import wait_for


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_cron_schedule_and_retry_flags_round_trip_through_get(taskmesh: Taskmesh) -> None:
    name = unique("cli-cron")
    ok(
        taskmesh(
            "jobs", "create", name, "--noop",
            "--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "--misfire", "skip", "--overlap", "forbid",
            "--schedule-jitter", "10s",
            "--max-attempts", "5", "--initial-backoff", "2s", "--backoff-multiplier", "3", "--max-backoff", "1m",
            "--retry-jitter", "0.25", "--non-retryable-http-status", "404", "--non-retryable-http-status", "410",
            "--non-retryable-exit-code", "3", "--attempt-timeout", "90s",
        )
    )  # fmt: skip
    job = as_json(taskmesh("jobs", "get", name, "-o", "json"))
    assert job["schedule"] == {
        "cron": {"expression": "30 2 * * *", "timezone": "Europe/Berlin"},
        "jitter": "10s",
        "misfirePolicy": "SKIP",
        "overlapPolicy": "FORBID",
    }
    assert job["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "2s",
        "backoffMultiplier": 3.0,
        "maxBackoff": "60s",
        "jitter": 0.25,
        "nonRetryableHttpStatuses": [404, 410],
        "nonRetryableExitCodes": [3],
    }
    assert job["attemptTimeout"] == "90s" and job["paused"] is False
    berlin = [parse_time(t).astimezone(ZoneInfo("Europe/Berlin")) for t in job["nextFireTimes"]]
    assert len(berlin) == 5 and all((t.hour, t.minute) == (2, 30) for t in berlin)
    shown = fields(ok(taskmesh("jobs", "get", name)))
    assert shown["schedule"] == "cron 30 2 * * * (Europe/Berlin)"
    assert (shown["misfire policy"], shown["overlap policy"], shown["max attempts"]) == ("skip", "forbid", "5")

    # Updates change only what their flags name.
    fire_all = as_json(
        taskmesh("jobs", "update", name, "--misfire", "fire-all", "--catch-up-window", "2h", "-o", "json")
    )
    assert fire_all["schedule"] == {**job["schedule"], "misfirePolicy": "FIRE_ALL", "catchUpWindow": "7200s"}
    skip = as_json(taskmesh("jobs", "update", name, "--misfire", "skip", "-o", "json"))
    assert skip["schedule"] == {**fire_all["schedule"], "misfirePolicy": "SKIP"}
    assert skip["retryPolicy"] == job["retryPolicy"] and skip["nextFireTimes"] == job["nextFireTimes"]

    manual = as_json(taskmesh("jobs", "update", name, "--no-schedule", "-o", "json"))
    assert "schedule" not in manual and manual["nextFireTimes"] == []
    assert manual["retryPolicy"] == job["retryPolicy"]
    assert fields(ok(taskmesh("jobs", "get", name)))["schedule"] == "manual"
    assert "scheduleHealth" not in as_json(taskmesh("jobs", "status", name, "-o", "json"))


def test_every_and_at_schedules(taskmesh: Taskmesh) -> None:
    interval = as_json(
        taskmesh(
            "jobs", "create", unique("cli-every"), "--noop", "--every", "90s",
            "--anchor", "2024-01-01T00:02:00Z", "--misfire", "fire-all", "-o", "json",
        )
    )  # fmt: skip
    assert interval["schedule"] == {
        "interval": {"every": "90s", "anchorTime": "2024-01-01T00:02:00Z"},
        "misfirePolicy": "FIRE_ALL",
        "overlapPolicy": "OVERLAP_POLICY_UNSPECIFIED",  # zero values are printed, as the REST API does
    }
    times = [parse_time(t) for t in interval["nextFireTimes"]]
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=90)] * 4
    assert (times[0] - parse_time("2024-01-01T00:02:00Z")).total_seconds() % 90 == 0

    # --at on an interval job switches the kind and keeps the policies.
    at = "2031-01-01T09:00:00+01:00"
    once = as_json(taskmesh("jobs", "update", interval["id"], "--at", at, "-o", "json"))
    policies = {key: value for key, value in interval["schedule"].items() if key != "interval"}
    assert once["schedule"] == {"once": {"at": "2031-01-01T08:00:00Z"}, **policies}
    assert once["nextFireTimes"] == ["2031-01-01T08:00:00Z"]
    assert fields(ok(taskmesh("jobs", "get", interval["id"])))["schedule"] == "once at 2031-01-01T08:00:00Z"


def test_pause_and_resume_show_in_get_list_and_status(taskmesh: Taskmesh) -> None:
    name = unique("cli-pause")
    created = as_json(taskmesh("jobs", "create", name, "--noop", "--every", "1h", "-o", "json"))
    assert created["paused"] is False and len(created["nextFireTimes"]) == 5

    paused = as_json(taskmesh("jobs", "pause", name, "-o", "json"))
    assert paused["paused"] is True and paused["nextFireTimes"] == []
    assert as_json(taskmesh("jobs", "pause", name, "-o", "json"))["paused"] is True  # idempotent
    assert fields(ok(taskmesh("jobs", "get", name)))["schedule"] == "every 1h (paused)"
    rows = ok(taskmesh("jobs", "list", "--filter", f'name="{name}"')).splitlines()
    assert len(rows) == 2 and "every 1h (paused)" in rows[1]
    status = fields(ok(taskmesh("jobs", "status", name)))
    assert (status["state"], status["paused"]) == ("never ran", "yes") and "next fire" not in status
    assert as_json(taskmesh("jobs", "status", name, "-o", "json"))["scheduleHealth"]["paused"] is True

    resumed = as_json(taskmesh("jobs", "resume", name, "-o", "json"))
    assert resumed["paused"] is False and len(resumed["nextFireTimes"]) == 5
    assert fields(ok(taskmesh("jobs", "resume", name)))["schedule"] == "every 1h"
    health = as_json(taskmesh("jobs", "status", name, "-o", "json"))["scheduleHealth"]
    assert health["paused"] is False and health["nextFireTime"] == resumed["nextFireTimes"][0]
    status = fields(ok(taskmesh("jobs", "status", name)))
    next_fire = parse_time(resumed["nextFireTimes"][0]).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (status["paused"], status["next fire"]) == ("no", next_fire)


def test_skipped_slots_of_a_forbid_job(taskmesh: Taskmesh, admin_client: TaskmeshClient) -> None:
    name = unique("cli-forbid")
    created = taskmesh(
        "jobs", "create", name, "--sleep", "60", "--every", "1s", "--overlap", "forbid", "-o", "json"
    )
    job_id = as_json(created)["id"]

    def three_skipped() -> list[job_service_pb2.SkippedSlot] | None:
        slots = admin_client.list_skipped_slots(job_id).skipped_slots
        return list(slots) if len(slots) >= 3 else None

    try:
        wait_for(three_skipped, timeout=30, interval=0.2, message="three skipped slots")
        ok(taskmesh("jobs", "pause", name))  # no more slots from here on: the lists below stay put
        slots = list(admin_client.iter_skipped_slots(job_id))
        active = slots[0].active_run_id
        assert admin_client.get_run(active).state in (run_pb2.Run.QUEUED, run_pb2.Run.RUNNING)

        table = ok(taskmesh("jobs", "skipped-slots", name)).splitlines()
        assert table[0].split() == ["SLOT", "REASON", "RECORDED", "ACTIVE", "RUN"]
        rows = [row.split() for row in table[1:]]
        assert [cells[0] for cells in rows] == [
            slot.slot_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for slot in slots
        ]
        assert all((cells[1], cells[3]) == ("OVERLAP", active) for cells in rows)
        newest = as_json(taskmesh("jobs", "skipped-slots", name, "--limit", "1", "-o", "json"))
        assert len(newest) == 1 and (newest[0]["reason"], newest[0]["activeRunId"]) == ("OVERLAP", active)
        paged = as_json(
            taskmesh("jobs", "skipped-slots", job_id, "--page-size", "1", "--limit", "3", "-o", "json")
        )
        times = [parse_time(slot["slotTime"]) for slot in paged]
        assert times == [slot.slot_time.ToDatetime(tzinfo=UTC) for slot in slots[:3]], "newest first, 3 pages"

        health = as_json(taskmesh("jobs", "status", name, "-o", "json"))["scheduleHealth"]
        assert (int(health["skippedSlots"]), health["paused"]) == (len(slots), True)
        assert fields(ok(taskmesh("jobs", "status", name)))["skipped slots"] == str(len(slots))
    finally:
        admin_client.pause_job(job_id)
        for run in admin_client.iter_runs(job_id=job_id):
            if run.state in (run_pb2.Run.QUEUED, run_pb2.Run.RUNNING):
                admin_client.cancel_run(run.id)
