"""Worker pools through the gateway: a pool with no worker waits (with its reason) until one
joins; a task some workers do not know reaches only those that do (a rolling deploy: none
fails, none is lost); a run not started within its start deadline fails NOT_STARTED."""

from __future__ import annotations

from typing import Any

import httpx

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.pools.conftest import OLDER, worker_env, workers_connected
from tests.support import free_port, wait_for


def _waiting(api: httpx.Client, run_id: str, code: str) -> dict[str, Any] | None:
    run: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()
    return run if run["state"] == "QUEUED" and run.get("waitingReason", "").startswith(code + ": ") else None


def test_a_pool_with_no_worker_waits_until_a_worker_of_it_joins(mesh: Mesh, api: httpx.Client) -> None:
    mesh.start_worker(extra_env=worker_env(OLDER))  # serves the default pool only
    wait_for(lambda: workers_connected(api, 1), timeout=30, interval=0.1, message="worker-1")
    job = create_job(api, "gpu-job", {"python": {"task": "t.hello"}}, pool="gpu")
    run_id = trigger(api, job["id"])["id"]
    waiting = wait_for(
        lambda: _waiting(api, run_id, "NO_WORKER_FOR_POOL"), timeout=30, interval=0.1, message="a waiting reason"
    )
    assert waiting["pool"] == "gpu" and "pool gpu" in waiting["waitingReason"]
    status = api.get(f"/api/jobs/{job['id']}/status").json()
    assert status["waitingReason"].startswith("NO_WORKER_FOR_POOL: ")

    mesh.start_worker(extra_env=worker_env(OLDER), pools=["gpu", "default"])
    run = wait_run_terminal(api, run_id, timeout=60)
    assert run["state"] == "SUCCEEDED" and run["workerId"] == "worker-2" and not run.get("waitingReason")


def test_a_task_unknown_to_one_of_two_workers_runs_only_on_the_other(mesh: Mesh, api: httpx.Client) -> None:
    """worker-1 and worker-2 run the older registry (no deploy.new): the runs wait, with the
    reason, and none fails; worker-3 (the new release) joins and takes every one of them."""
    job = create_job(api, "rolling", {"python": {"task": "deploy.new"}})
    batch = api.post("/api/jobs:batchTrigger", json={"requests": [{"id": job["id"]} for _ in range(20)]})
    assert batch.status_code == 200, batch.text
    run_ids = [run["id"] for run in batch.json()["runs"]]
    wait_for(
        lambda: _waiting(api, run_ids[-1], "NO_WORKER_FOR_TASK"), timeout=30, interval=0.1, message="the reason"
    )
    noop = wait_run_terminal(api, trigger(api, create_job(api, "still-works", {"noop": {}})["id"])["id"])
    assert noop["state"] == "SUCCEEDED"  # the older workers take the work they can run

    mesh.start_worker(extra_env=worker_env())
    runs = [wait_run_terminal(api, run_id, timeout=60) for run_id in run_ids]
    assert {(r["state"], r["workerId"], r["attempt"]) for r in runs} == {("SUCCEEDED", "worker-3", 1)}
    listed = api.get("/api/runs", params={"jobId": job["id"], "pageSize": 100}).json()["runs"]
    assert len(listed) == 20


def test_a_run_not_started_in_time_fails_not_started(api: httpx.Client) -> None:
    job = create_job(api, "too-late", {"noop": {}}, pool="nowhere", startDeadline="1s")
    assert job["startDeadline"] == "1s"
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=30)
    assert run["state"] == "FAILED" and run["error"]["kind"] == "NOT_STARTED"
    assert "start deadline" in run["error"]["message"] and not run.get("startTime")


def test_a_worker_that_cannot_reach_rabbitmq_does_not_count_as_serving_its_pool(
    mesh: Mesh, api: httpx.Client
) -> None:
    """Its stream to the scheduler is up, its consumer is not: ListWorkers says so, and a run of
    its pool waits with NO_WORKER_FOR_POOL (naming the broker) until a worker that consumes joins."""
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"  # nothing listens there
    mesh.start_worker(extra_env={**worker_env(OLDER), "TASKMESH_AMQP_URL": unreachable}, pools=["nobroker"])

    def cut_off() -> dict[str, Any] | None:
        workers = api.get("/api/workers", params={"pool": "nobroker"}).json().get("workers", [])
        return workers[0] if len(workers) == 1 and not workers[0].get("consuming", False) else None

    worker = wait_for(cut_off, timeout=30, interval=0.1, message="the cut-off worker, not consuming")
    job = create_job(api, "nobroker-job", {"noop": {}}, pool="nobroker")
    run_id = trigger(api, job["id"])["id"]
    waiting = wait_for(
        lambda: _waiting(api, run_id, "NO_WORKER_FOR_POOL"), timeout=30, interval=0.1, message="a waiting reason"
    )
    assert "cannot reach RabbitMQ" in waiting["waitingReason"]

    mesh.start_worker(extra_env=worker_env(OLDER), pools=["nobroker"])
    run = wait_run_terminal(api, run_id, timeout=60)
    assert run["state"] == "SUCCEEDED" and run["workerId"] != worker["workerId"]
    consuming = {w["workerId"]: w.get("consuming", False) for w in api.get("/api/workers").json()["workers"]}
    assert consuming[worker["workerId"]] is False and consuming[run["workerId"]] is True
