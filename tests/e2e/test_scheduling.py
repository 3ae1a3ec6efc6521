"""Scheduling against the real services, with real scheduler processes (two of them) that the
tests kill, stop and restart: one run per slot, misfire, pause/resume and overlap policies.

The module runs its own mesh (its schedulers are stopped and killed here). Jobs fire every
second; each test checks the set of slot times its jobs fired and skipped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from taskmesh.launcher import Mesh, wait_serving
from tests.e2e.helpers import unique
from tests.support import Isolation, free_port, wait_for

SECOND = timedelta(seconds=1)
NOOP = {"noop": {}}
MISFIRE_THRESHOLD = 5.0  # the default (TASKMESH_SCHEDULE_MISFIRE_THRESHOLD)


@dataclass
class SchedulingMesh:
    mesh: Mesh
    isolation: Isolation
    api: httpx.Client
    metrics_ports: dict[str, int]

    def scheduler_env(self, name: str) -> dict[str, str]:
        port = free_port()
        self.metrics_ports[name] = port
        env = {"TASKMESH_SCHEDULER_ID": name, "TASKMESH_SCHEDULER_METRICS_LISTEN": f"127.0.0.1:{port}"}
        if name != "scheduler":  # the first one listens where workers connect
            env["TASKMESH_SCHEDULER_LISTEN"] = f"127.0.0.1:{free_port()}"
        return env

    def start_scheduler(self, name: str) -> None:
        env = self.scheduler_env(name)
        process = self.mesh.start_scheduler(name, env)
        address = env.get("TASKMESH_SCHEDULER_LISTEN", self.mesh.settings.scheduler_address)
        wait_serving(address, process=process)

    def kill_scheduler(self, name: str) -> None:
        process = self.mesh.processes[name]
        process.signal(signal.SIGKILL)
        assert process.popen is not None
        process.popen.wait(10)

    def ensure_two_schedulers(self) -> None:
        for name in ("scheduler", "scheduler-2"):
            if not self.mesh.processes[name].alive():
                self.start_scheduler(name)

    def metric(self, name: str, metric: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_ports[name]}/metrics").text
        lines = [line for line in text.splitlines() if line.startswith(metric)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.fixture(scope="module")
def sched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulingMesh]:
    isolation = Isolation.create("s")
    log_dir = tmp_path_factory.mktemp("scheduling-logs")
    # Small batches: when many jobs are due at once, both schedulers get some of them.
    env = {**os.environ, **isolation.env(), "TASKMESH_SCHEDULE_BATCH_SIZE": "2"}
    mesh = Mesh(env, log_dir=log_dir)
    try:
        setup = SchedulingMesh(mesh, isolation, httpx.Client(), {})
        mesh.migrate()
        api = mesh.start_api_server()
        wait_serving(mesh.settings.api_address, process=api)
        setup.start_scheduler("scheduler")
        setup.start_scheduler("scheduler-2")
        mesh.start_worker()
        gateway = mesh.start_gateway()
        wait_serving(f"127.0.0.1:{mesh.settings.gateway_port}", process=gateway)
        base = f"http://127.0.0.1:{mesh.settings.gateway_port}"
        token = httpx.post(f"{base}/api/auth/login", json={"username": "admin", "password": "admin"}).json()
        setup.api = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token['accessToken']}"}, timeout=10
        )
        yield setup
    finally:
        # workers may be sleeping through long jobs: do not wait for them
        for process in mesh.processes.values():
            if process.name.startswith("worker"):
                process.signal(signal.SIGKILL)
        mesh.stop_all()
        _print_errors(log_dir)
        isolation.drop()


def _print_errors(log_dir: Path) -> None:
    for path in sorted(log_dir.glob("*.log")):
        lines = [line for line in path.read_text(errors="replace").splitlines() if '"ERROR"' in line]
        if lines:
            print(f"--- errors logged by {path.stem} ---")
            print("\n".join(lines[-20:]))


# --- helpers ----------------------------------------------------------------------------------


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def create(
    sched: SchedulingMesh, schedule: dict[str, Any], executor: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = sched.api.post(
        "/api/jobs", json={"name": unique("sched"), "executor": executor or NOOP, "schedule": schedule}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def every_second(**fields: Any) -> dict[str, Any]:
    return {"interval": {"every": "1s"}, **fields}


def runs_of(sched: SchedulingMesh, job_id: str) -> list[dict[str, Any]]:
    response = sched.api.get(f"/api/jobs/{job_id}/runs", params={"pageSize": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def slots_of(sched: SchedulingMesh, job_id: str) -> list[datetime]:
    return sorted(ts(r["slotTime"]) for r in runs_of(sched, job_id) if r["trigger"] == "SCHEDULE")


def skipped_of(sched: SchedulingMesh, job_id: str) -> list[dict[str, Any]]:
    response = sched.api.get(f"/api/jobs/{job_id}/skipped-slots", params={"pageSize": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["skippedSlots"])


def health(sched: SchedulingMesh, job_id: str) -> dict[str, Any]:
    return dict(sched.api.get(f"/api/jobs/{job_id}/status").json()["scheduleHealth"])


def pause(sched: SchedulingMesh, job_id: str) -> dict[str, Any]:
    response = sched.api.post(f"/api/jobs/{job_id}:pause", json={})
    assert response.status_code == 200, response.text
    return dict(response.json())


def resume(sched: SchedulingMesh, job_id: str) -> dict[str, Any]:
    response = sched.api.post(f"/api/jobs/{job_id}/resume", json={})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_fired(sched: SchedulingMesh, job_ids: list[str], count: int, after: datetime | None = None) -> None:
    """Until every job has `count` scheduled runs (with slots after `after`)."""

    def enough() -> bool:
        return all(len([s for s in slots_of(sched, j) if after is None or s > after]) >= count for j in job_ids)

    wait_for(enough, timeout=30 + 2 * count, interval=0.25, message=f"{count} fired slots per job")


def grid(first: datetime, last: datetime) -> list[datetime]:
    return [first + k * SECOND for k in range(int((last - first) / SECOND) + 1)]


def assert_every_slot_fired_once(sched: SchedulingMesh, job: dict[str, Any], minimum: int) -> list[datetime]:
    """Pause the job, then: its runs cover every slot from its first to its last, once each."""
    paused = pause(sched, job["id"])
    slots = slots_of(sched, job["id"])
    first = ts(job["nextFireTimes"][0])
    assert len(slots) >= minimum
    assert slots == grid(first, ts(paused["lastFireTime"])), "exactly one run per slot, none missing"
    assert skipped_of(sched, job["id"]) == []
    status = health(sched, job["id"])
    assert (status["misfiredSlots"], status["skippedSlots"]) == ("0", "0")
    return slots


def db_rows(sched: SchedulingMesh, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(sched.isolation.libpq_url) as conn:
        return conn.execute(sql, params).fetchall()


# --- tests ------------------------------------------------------------------------------------


def test_two_schedulers_fire_every_slot_exactly_once(sched: SchedulingMesh) -> None:
    sched.ensure_two_schedulers()
    names = ("scheduler", "scheduler-2")
    before = {name: sched.metric(name, "taskmesh_schedule_fire_lag_seconds_count") for name in names}
    jobs = [
        create(sched, {"cron": {"expression": "* * * * * *"}}),
        create(sched, {"cron": {"expression": "* * * * * *", "timezone": "America/New_York"}}),
        create(sched, {"cron": {"expression": "*/1 * * * * *", "timezone": "Asia/Kolkata"}}),
        create(sched, every_second()),
        create(sched, every_second()),
        create(sched, every_second()),
    ]
    wait_fired(sched, [j["id"] for j in jobs], 20)
    fired = sum(len(assert_every_slot_fired_once(sched, job, minimum=20)) for job in jobs)

    # Both schedulers fired, together they account for every run, and neither met a slot that
    # already had a run (the unique constraint never had to step in).
    def lag_counts() -> dict[str, float]:
        return {n: sched.metric(n, "taskmesh_schedule_fire_lag_seconds_count") - before[n] for n in names}

    counts = wait_for(lambda: sum(lag_counts().values()) == fired and lag_counts(), timeout=10)
    assert all(count > 0 for count in counts.values()), counts
    assert [sched.metric(n, "taskmesh_schedule_slot_conflicts_total") for n in names] == [0, 0]
    for job in jobs:
        sched.api.delete(f"/api/jobs/{job['id']}")


def test_sigkill_of_one_scheduler_loses_and_doubles_nothing(sched: SchedulingMesh) -> None:
    sched.ensure_two_schedulers()
    jobs = [create(sched, every_second()) for _ in range(4)]
    wait_fired(sched, [j["id"] for j in jobs], 4)
    sched.kill_scheduler("scheduler-2")
    killed_at = datetime.now(UTC)
    wait_fired(sched, [j["id"] for j in jobs], 5, after=killed_at)
    for job in jobs:
        slots = assert_every_slot_fired_once(sched, job, minimum=9)
        assert slots[-1] > killed_at + 4 * SECOND, "the other scheduler kept firing"
        sched.api.delete(f"/api/jobs/{job['id']}")


def test_misfire_policies_after_every_scheduler_was_down(sched: SchedulingMesh) -> None:
    sched.ensure_two_schedulers()
    jobs = {
        "FIRE_ONCE": create(sched, every_second(misfirePolicy="FIRE_ONCE")),
        "SKIP": create(sched, every_second(misfirePolicy="SKIP")),
        "FIRE_ALL": create(sched, every_second(misfirePolicy="FIRE_ALL", catchUpWindow="3s")),
    }
    wait_fired(sched, [j["id"] for j in jobs.values()], 2)
    for name in ("scheduler", "scheduler-2"):
        sched.kill_scheduler(name)
    down_at = datetime.now(UTC)
    # The outage itself: no scheduler runs for longer than the misfire threshold.
    time.sleep(MISFIRE_THRESHOLD + 4)
    up_at = datetime.now(UTC)
    sched.start_scheduler("scheduler")
    sched.start_scheduler("scheduler-2")
    wait_fired(sched, [j["id"] for j in jobs.values()], 2, after=up_at + 2 * SECOND)

    for policy, job in jobs.items():
        paused = pause(sched, job["id"])
        fired = slots_of(sched, job["id"])
        skipped = skipped_of(sched, job["id"])
        skipped_slots = sorted(ts(s["slotTime"]) for s in skipped)
        status = health(sched, job["id"])
        # nothing silently missed: every slot either fired once or is recorded as skipped
        assert sorted(fired + skipped_slots) == grid(ts(job["nextFireTimes"][0]), ts(paused["lastFireTime"]))
        assert skipped_slots, policy
        assert all(down_at - 2 * SECOND < s < up_at + 10 * SECOND for s in skipped_slots), policy
        assert status["skippedSlots"] == str(len(skipped))
        during = [s for s in fired if down_at < s < max(skipped_slots)]
        if policy == "FIRE_ONCE":
            assert {s["reason"] for s in skipped} == {"MISFIRED"}
            assert len(skipped) >= 5
            assert during == [], "the missed slots before the last one did not fire..."
            assert max(skipped_slots) + SECOND in fired, "...the catch-up run fired for the latest one"
            assert status["misfiredSlots"] == "1"
        elif policy == "SKIP":
            assert {s["reason"] for s in skipped} == {"MISFIRED"}
            assert len(skipped) >= 6
            assert during == []
            assert status["misfiredSlots"] == "0"
        else:
            # the slots older than the 3 s window are recorded, the others all fired
            assert {s["reason"] for s in skipped} == {"OUTSIDE_CATCH_UP_WINDOW"}
            assert len(skipped) >= 3
            assert 2 <= int(status["misfiredSlots"]) <= 5
        sched.api.delete(f"/api/jobs/{job['id']}")


def test_pause_and_resume_burst_no_more_than_the_misfire_policy_allows(sched: SchedulingMesh) -> None:
    sched.ensure_two_schedulers()
    jobs = {
        "FIRE_ONCE": create(sched, every_second()),
        "SKIP": create(sched, every_second(misfirePolicy="SKIP")),
        "FIRE_ALL": create(sched, every_second(misfirePolicy="FIRE_ALL")),
    }
    wait_fired(sched, [j["id"] for j in jobs.values()], 2)
    paused_at: dict[str, datetime] = {}
    for policy, job in jobs.items():
        paused = pause(sched, job["id"])
        assert paused["nextFireTimes"] == []
        paused_at[policy] = ts(paused["updateTime"])
        assert pause(sched, job["id"])["updateTime"] == paused["updateTime"]  # idempotent
    # Several slots pass while paused; nothing fires meanwhile.
    counts = {p: len(runs_of(sched, j["id"])) for p, j in jobs.items()}
    time.sleep(4)
    assert {p: len(runs_of(sched, j["id"])) for p, j in jobs.items()} == counts
    resumed_at: dict[str, datetime] = {}
    for policy, job in jobs.items():
        resumed = resume(sched, job["id"])
        resumed_at[policy] = ts(resumed["updateTime"])
        assert resume(sched, job["id"])["updateTime"] == resumed["updateTime"]  # idempotent
    wait_fired(sched, [j["id"] for j in jobs.values()], 2, after=max(resumed_at.values()) + SECOND)

    for policy, job in jobs.items():
        last = ts(pause(sched, job["id"])["lastFireTime"])
        fired = slots_of(sched, job["id"])
        skipped = skipped_of(sched, job["id"])
        skipped_slots = sorted(ts(s["slotTime"]) for s in skipped)
        status = health(sched, job["id"])
        every_slot = grid(ts(job["nextFireTimes"][0]), last)
        assert sorted(fired + skipped_slots) == every_slot
        came_while_paused = [s for s in every_slot if paused_at[policy] < s < resumed_at[policy]]
        assert len(came_while_paused) >= 3
        fired_for_them = [s for s in fired if s in came_while_paused]
        assert all(paused_at[policy] - SECOND < s < resumed_at[policy] + SECOND for s in skipped_slots)
        if policy == "FIRE_ONCE":
            assert len(fired_for_them) <= 1 and status["misfiredSlots"] == "1", "one catch-up run"
            assert {s["reason"] for s in skipped} == {"MISFIRED"} and len(skipped) >= 2
        elif policy == "SKIP":
            assert fired_for_them == [] and status["misfiredSlots"] == "0"
            assert set(came_while_paused) <= set(skipped_slots)
            assert {s["reason"] for s in skipped} == {"MISFIRED"}
        else:
            assert fired_for_them == came_while_paused and skipped == []
            assert int(status["misfiredSlots"]) >= len(came_while_paused)
        sched.api.delete(f"/api/jobs/{job['id']}")


def test_forbid_skips_while_a_run_is_active_and_replace_cancels_it(sched: SchedulingMesh) -> None:
    sched.ensure_two_schedulers()
    long_sleep = {"sleep": {"seconds": 120}}
    forbid = create(sched, every_second(overlapPolicy="FORBID"), long_sleep)
    replace = create(sched, {"interval": {"every": "2s"}, "overlapPolicy": "REPLACE"}, long_sleep)

    overlapping = wait_for(
        lambda: len(skipped_of(sched, forbid["id"])) >= 3 and skipped_of(sched, forbid["id"]),
        timeout=30,
        interval=0.25,
        message="FORBID to skip three slots",
    )
    (active,) = runs_of(sched, forbid["id"])
    assert {s["reason"] for s in overlapping} == {"OVERLAP"}
    assert {s["activeRunId"] for s in overlapping} == {active["id"]}
    assert min(ts(s["slotTime"]) for s in overlapping) > ts(active["slotTime"])

    def two_runs() -> list[dict[str, Any]]:
        runs = sorted(runs_of(sched, replace["id"]), key=lambda r: r["slotTime"])
        return runs if len(runs) >= 2 else []

    first, second = wait_for(two_runs, timeout=30, interval=0.25, message="REPLACE to start a second run")[:2]
    # The replaced run is cancelled (CANCELLING while its worker still holds it) in the very
    # transaction that created the new one.
    assert first["state"] in ("CANCELLING", "CANCELLED")
    assert ts(second["slotTime"]) == ts(first["slotTime"]) + 2 * SECOND
    ((cancel_time, next_queue_time),) = db_rows(
        sched,
        "SELECT a.cancel_time, b.queue_time FROM runs a, runs b WHERE a.id = %s AND b.id = %s",
        first["id"],
        second["id"],
    )
    assert cancel_time is not None and abs(cancel_time - next_queue_time) < timedelta(seconds=1)
    assert skipped_of(sched, replace["id"]) == []
    for job in (forbid, replace):
        sched.api.delete(f"/api/jobs/{job['id']}")
