"""Finding 11: work only goes to workers that can run it. A shell run reaches no worker started
without shell: it waits QUEUED, saying why, and runs once a worker with shell connects."""

from __future__ import annotations

import sys

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.support import wait_for

NO_SHELL_WORKER = "NO_WORKER_FOR_EXECUTOR: no connected worker can run shell"


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    return {"TASKMESH_WORKER_SHELL_ENABLED": "false"}


def _waiting(api: httpx.Client, run_id: str) -> dict[str, str] | None:
    run = api.get(f"/api/runs/{run_id}").json()
    return run if run["state"] == "QUEUED" and run.get("waitingReason") == NO_SHELL_WORKER else None


def test_a_shell_run_waits_for_a_worker_with_shell_and_is_never_failed_by_another(
    api: httpx.Client, mesh: Mesh
) -> None:
    shell = create_job(api, "needs-shell", {"shell": {"argv": [sys.executable, "-c", "print('ran with shell')"]}})
    run_id = trigger(api, shell["id"])["id"]
    wait_for(
        lambda: _waiting(api, run_id), timeout=30, interval=0.1, message="the shell run to wait with a reason"
    )
    listed = api.get("/api/runs", params={"jobId": shell["id"]}).json()["runs"]
    assert [(r["id"], r.get("waitingReason")) for r in listed] == [(run_id, NO_SHELL_WORKER)]

    # The worker without shell is alive and takes the work it can run, not the shell run.
    noop = wait_run_terminal(api, trigger(api, create_job(api, "any-worker", {"noop": {}})["id"])["id"])
    assert noop["state"] == "SUCCEEDED" and noop["workerId"] == "worker-1"
    assert _waiting(api, run_id) is not None

    mesh.start_worker(extra_env={"TASKMESH_WORKER_SHELL_ENABLED": "true"})
    final = wait_run_terminal(api, run_id, timeout=60)
    assert final["state"] == "SUCCEEDED" and final["workerId"] == "worker-2"
    assert "ran with shell" in final["result"]["shell"]["outputExcerpt"]
    assert final.get("attempts", [])[0]["workerId"] == "worker-2" and len(final["attempts"]) == 1
    assert not final.get("waitingReason")
