"""Python tasks through the gateway: output, retries then NonRetryable, cancel of sync and
async tasks, a timeout that kills an isolated child, and ListWorkers over REST."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.pools.conftest import login, worker_env, workers_connected
from tests.support import wait_for


@pytest.fixture(scope="module", autouse=True)
def one_worker(mesh: Mesh, api: httpx.Client) -> None:
    mesh.start_worker(extra_env=worker_env())
    wait_for(lambda: workers_connected(api, 1), timeout=30, interval=0.1, message="the worker to connect")


def _python(task: str) -> dict[str, Any]:
    return {"python": {"task": task}}


def test_a_python_task_runs_and_its_output_and_prints_are_recorded(api: httpx.Client) -> None:
    job = create_job(api, "py-hello", _python("t.hello"))
    # (the gateway prints empty fields: the task declares no secrets)
    assert job["executor"] == {"python": {"task": "t.hello", "secrets": []}} and job["pool"] == "default"
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED" and run["pool"] == "default"
    assert f'"run":"{run["id"]}"' in run["result"]["python"]["returnExcerpt"]
    assert run["output"] == {"run": run["id"], "attempt": 1}
    lines = [line["text"] for line in api.get(f"/api/runs/{run['id']}/logs").json()["lines"]]
    assert "hello from attempt 1" in lines


def test_a_failing_task_is_retried_and_a_non_retryable_one_is_not(api: httpx.Client) -> None:
    policy = {"maxAttempts": 3, "initialBackoff": "0.1s"}
    flaky = create_job(api, "py-flaky", _python("t.flaky"), retryPolicy=policy)
    run = wait_run_terminal(api, trigger(api, flaky["id"])["id"])
    assert run["state"] == "SUCCEEDED" and run["attempt"] == 2
    first = run["attempts"][0]
    assert (
        first["state"] == "FAILED" and first["error"]["message"] == "RuntimeError: first attempt fails on purpose"
    )
    assert first["result"]["python"]["exceptionType"] == "RuntimeError"
    assert "in flaky" in first["result"]["python"]["traceback"]

    never = create_job(api, "py-never", _python("t.never"), retryPolicy=policy)
    run = wait_run_terminal(api, trigger(api, never["id"])["id"])
    assert run["state"] == "FAILED" and run["attempt"] == 1 and len(run["attempts"]) == 1
    assert run["error"]["message"] == "NonRetryable: this can never work"
    assert not run["error"].get("retryable")


def _running(api: httpx.Client, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()
    return run if run["state"] == "RUNNING" else None


@pytest.mark.parametrize("task", ["t.wait_async", "t.wait_sync"])
def test_cancel_stops_a_running_task(api: httpx.Client, task: str) -> None:
    job = create_job(api, f"py-cancel-{task}", _python(task))
    run_id = trigger(api, job["id"])["id"]
    wait_for(lambda: _running(api, run_id), timeout=30, interval=0.05, message="the task to start")
    assert api.post(f"/api/runs/{run_id}:cancel", json={}).status_code == 200
    run = wait_run_terminal(api, run_id, timeout=30)
    assert run["state"] == "CANCELLED"


def test_a_timeout_kills_an_isolated_task_that_ignores_it(api: httpx.Client) -> None:
    job = create_job(api, "py-spin", _python("t.spin"), attemptTimeout="10s", retryPolicy={"maxAttempts": 1})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=60)
    assert run["state"] == "FAILED" and run["error"]["kind"] == "TIMEOUT"
    lines = [line["text"] for line in api.get(f"/api/runs/{run['id']}/logs").json()["lines"]]
    pids = [int(text.split()[1]) for text in lines if text.startswith("pid ")]
    assert pids, lines
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_list_workers_shows_pools_executors_tasks_and_slots_to_a_viewer(gateway: str, api: httpx.Client) -> None:
    created = api.post(
        "/api/users", json={"username": "pool-viewer", "password": "viewer-pass-1", "role": "VIEWER"}
    )
    assert created.status_code == 200, created.text
    viewer = {"Authorization": f"Bearer {login(gateway, 'pool-viewer', 'viewer-pass-1')}"}
    response = httpx.get(f"{gateway}/api/workers", headers=viewer)
    assert response.status_code == 200, response.text
    [worker] = response.json()["workers"]
    assert worker["workerId"] == "worker-1" and worker["pools"] == ["default"]
    assert "python" in worker["executors"] and "t.hello" in worker["tasks"] and "deploy.new" in worker["tasks"]
    assert worker["slots"] == 32 and "connectTime" in worker
    assert (
        httpx.get(f"{gateway}/api/workers", params={"pool": "gpu"}, headers=viewer).json().get("workers", []) == []
    )
    bad = httpx.get(f"{gateway}/api/workers", params={"pool": "Not A Pool"}, headers=viewer)
    assert bad.status_code == 400 and "pool" in bad.json()["message"]


def test_parameters_reach_the_task_and_a_bad_one_fails_naming_the_field(api: httpx.Client) -> None:
    job = create_job(api, "py-params", _python("t.double"), retryPolicy={"maxAttempts": 3})
    good = api.post(f"/api/jobs/{job['id']}/trigger", json={"parameters": {"n": 21}}).json()
    assert wait_run_terminal(api, good["id"])["output"] == {"doubled": 42}
    bad = api.post(f"/api/jobs/{job['id']}/trigger", json={"parameters": {"n": "x"}}).json()
    failed = wait_run_terminal(api, bad["id"])
    assert failed["state"] == "FAILED" and failed["attempt"] == 1  # not retried
    assert failed["error"]["message"].startswith("parameters.n: ")


def test_bad_pool_and_task_names_are_refused_naming_the_field(api: httpx.Client) -> None:
    bad_pool = api.post("/api/jobs", json={"name": "bad-pool", "executor": {"noop": {}}, "pool": "GPU!"})
    assert bad_pool.status_code == 400 and "job.pool" in bad_pool.json()["message"]
    bad_task = api.post("/api/jobs", json={"name": "bad-task", "executor": {"python": {"task": "a b"}}})
    assert bad_task.status_code == 400 and "job.executor.python.task" in bad_task.json()["message"]
    bad_deadline = api.post(
        "/api/jobs", json={"name": "bad-deadline", "executor": {"noop": {}}, "startDeadline": "0.1s"}
    )
    assert bad_deadline.status_code == 400 and "job.start_deadline" in bad_deadline.json()["message"]
