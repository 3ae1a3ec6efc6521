"""Cancellation, timeouts, retries with backoff, idempotent triggers and replays."""

import asyncio
import time
from datetime import datetime

import httpx
import psycopg

from taskmesh.broker.amqp import AmqpConnection
from taskmesh.launcher import Mesh
from taskmesh.names import WORK_ROUTING_KEY, Names
from taskmesh.v1 import worker_service_pb2
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers, set_policy
from tests.support import EffectServer, Isolation, queue_counts, wait_for

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_cancelling_a_queued_run_ends_it_before_any_worker_runs_it(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, effects: EffectServer
) -> None:
    job = create_job(api, "cancel-queued", {"http": {"url": f"{effects.base}/cancel-queued"}})
    with psycopg.connect(isolation.libpq_url) as conn:  # queued, its work unit not yet published
        (run_id,) = conn.execute(
            """INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time)
               SELECT gen_random_uuid(), id, 'QUEUED', 1, 'MANUAL', executor, clock_timestamp() FROM jobs
               WHERE id = %s RETURNING id::text""",
            (job["id"],),
        ).fetchone()
    cancelled = api.post(f"/api/runs/{run_id}:cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELLED" and cancelled.json()["cancelTime"]

    async def publish() -> None:
        connection = await AmqpConnection.open(AMQP)
        channel = await connection.channel()
        await channel.enable_confirms()
        unit = worker_service_pb2.WorkUnit(run_id=run_id, attempt=1).SerializeToString()
        await channel.publish_confirmed(
            Names(isolation.namespace).work_exchange,
            WORK_ROUTING_KEY,
            [unit],
            worker_service_pb2.WorkUnit.DESCRIPTOR.full_name,
        )
        await connection.close()

    asyncio.run(publish())
    wait_for(lambda: queue_counts(isolation.namespace)[0] == 0, timeout=20, message="the work unit consumed")
    assert effects.runs_hit("/cancel-queued") == []
    assert api.get(f"/api/runs/{run_id}").json()["state"] == "CANCELLED"
    again = api.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 400 and "CANCELLED" in again.json()["message"]  # FAILED_PRECONDITION


def test_cancelling_a_running_shell_run_stops_it_within_two_seconds(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, tmp_path
) -> None:
    ensure_workers(fault_mesh)
    pid_file = tmp_path / "pid"
    job = create_job(
        api, "cancel-running", {"shell": {"argv": ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]}}
    )
    run = trigger(api, job["id"])
    wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30, message="the process to start"
    )
    pid = int(pid_file.read_text())
    asked = time.monotonic()
    response = api.post(f"/api/runs/{run['id']}:cancel")
    assert response.json()["state"] == "CANCELLING"
    final = wait_for(
        lambda: (r := api.get(f"/api/runs/{run['id']}").json())["state"] == "CANCELLED" and r,
        timeout=10,
        interval=0.05,
        message="CANCELLED",
    )
    assert time.monotonic() - asked < 2.0
    assert final["attempts"][-1]["state"] == "CANCELLED"
    try:
        with open(f"/proc/{pid}/stat") as stat:
            assert stat.read().split(") ", 1)[1][0] == "Z"  # at most a zombie awaiting its reaper
    except FileNotFoundError:
        pass


def test_a_shell_run_ignoring_term_times_out_and_is_killed(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "stubborn", {"shell": {"argv": ["sh", "-c", "trap '' TERM; echo started; sleep 60"]}})
    set_policy(api, job["id"], {"maxAttempts": 1}, attempt_timeout=1.0)
    began = time.monotonic()
    final = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=30)
    assert final["state"] == "FAILED"
    assert final["error"]["kind"] == "TIMEOUT"
    assert time.monotonic() - began < 10  # 1 s timeout + 1 s grace before KILL, not 60 s
    logs = api.get(f"/api/runs/{final['id']}/logs").json()
    assert [line["text"] for line in logs["lines"]] == ["started"]


def test_failed_attempts_are_retried_with_exponential_backoff(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, effects: EffectServer
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "backoff", {"http": {"url": f"{effects.base}/fail-backoff"}})
    set_policy(api, job["id"], {"maxAttempts": 3, "initialBackoff": "0.5s", "backoffMultiplier": 2, "jitter": 0})
    final = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=30)
    assert final["state"] == "FAILED" and final["attempt"] == 3
    attempts = final["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["state"] == "FAILED" and a["error"]["message"] == "HTTP 500" for a in attempts)
    assert all(a["result"]["http"]["statusCode"] == 500 and a["workerId"] for a in attempts)
    gaps = [
        (_time(attempts[i + 1]["startTime"]) - _time(attempts[i]["finishTime"])).total_seconds() for i in range(2)
    ]
    assert 0.5 <= gaps[0] < 0.5 + 1.5, gaps
    assert 1.0 <= gaps[1] < 1.0 + 1.5, gaps
    assert len(effects.runs_hit("/fail-backoff")) == 3

    replay = api.post(f"/api/runs/{final['id']}:retry")
    assert replay.status_code == 200
    assert replay.json()["retriedFromRunId"] == final["id"] and replay.json()["trigger"] == "RETRY"
    assert replay.json()["attempt"] == 1 and replay.json()["id"] != final["id"]


def test_non_retryable_failures_fail_at_once(api: httpx.Client, fault_mesh: Mesh, isolation: Isolation) -> None:
    job = create_job(api, "exit-2", {"shell": {"argv": ["sh", "-c", "exit 2"]}})
    set_policy(api, job["id"], {"maxAttempts": 5, "nonRetryableExitCodes": [2]})
    final = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=30)
    assert final["state"] == "FAILED" and final["attempt"] == 1


def test_the_same_idempotency_key_returns_the_original_run(api: httpx.Client, fault_mesh: Mesh) -> None:
    job = create_job(api, "idempotent", {"noop": {}})
    first = api.post(f"/api/jobs/{job['id']}/trigger", json={"idempotencyKey": "invoice-42"}).json()
    second = api.post(f"/api/jobs/{job['id']}/trigger", json={"idempotencyKey": "invoice-42"}).json()
    other = api.post(f"/api/jobs/{job['id']}/trigger", json={"idempotencyKey": "invoice-43"}).json()
    assert first["id"] == second["id"] != other["id"]
    assert first["idempotencyKey"] == "invoice-42"
    assert len(api.get(f"/api/jobs/{job['id']}/runs").json()["runs"]) == 2
