"""A Python task's worker dies mid-run: the attempt is lost and retried on another worker, and
the run's result is recorded once, by the attempt that finished."""

import signal

import httpx

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers, set_policy
from tests.support import Isolation, wait_for

FAST_RETRY = {"maxAttempts": 3, "initialBackoff": "0.2s", "jitter": 0}


def test_a_python_tasks_worker_sigkilled_mid_run_is_retried_elsewhere(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "py-killed", {"python": {"task": "examples.sleep"}})
    set_policy(api, job["id"], FAST_RETRY)
    run = trigger(api, job["id"])
    running = wait_for(
        lambda: (r := api.get(f"/api/runs/{run['id']}").json()).get("state") == "RUNNING" and r,
        timeout=30,
        message="the task to start",
    )
    victim = running["workerId"]
    fault_mesh.processes[victim].signal(signal.SIGKILL)

    final = wait_run_terminal(api, run["id"], timeout=60)
    assert final["state"] == "SUCCEEDED" and final["attempt"] == 2 and final["workerId"] != victim
    first, second = final["attempts"]
    assert first["error"]["kind"] == "LOST" and first["workerId"] == victim and "result" not in first
    assert second["result"]["python"]["returnExcerpt"] == '{"slept":3,"attempt":2}'
    assert final["result"] == second["result"]  # recorded once, by the attempt that finished
    assert final["output"] == {"slept": 3, "attempt": 2}
    lines = [line["text"] for line in api.get(f"/api/runs/{run['id']}/logs").json()["lines"]]
    assert lines.count("attempt 2 sleeps 3s") == 1
