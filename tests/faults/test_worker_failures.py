"""Workers that die or hang lose their attempts to others; late reports are refused."""

import json
import signal

import httpx

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers, set_policy
from tests.support import Isolation, wait_for

FAST_RETRY = {"maxAttempts": 3, "initialBackoff": "0.2s", "jitter": 0}


def _wait_running(api: httpx.Client, run_id: str) -> dict:
    return wait_for(
        lambda: (run := api.get(f"/api/runs/{run_id}").json()).get("state") == "RUNNING" and run,
        timeout=30,
        message=f"run {run_id} RUNNING",
    )


def test_sigkill_mid_run_finishes_on_another_worker_as_attempt_2(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "killed", {"sleep": {"seconds": 3}})
    set_policy(api, job["id"], FAST_RETRY)
    run = trigger(api, job["id"])
    victim = _wait_running(api, run["id"])["workerId"]
    fault_mesh.processes[victim].signal(signal.SIGKILL)

    final = wait_run_terminal(api, run["id"], timeout=60)
    assert final["state"] == "SUCCEEDED"
    assert final["attempt"] == 2
    assert final["workerId"] != victim
    assert [a["state"] for a in final["attempts"]] == ["FAILED", "SUCCEEDED"]
    assert final["attempts"][0]["error"]["kind"] == "LOST"
    assert final["attempts"][0]["workerId"] == victim
    running = api.get(f"/api/jobs/{job['id']}/runs", params={"filter": "state=RUNNING"}).json()["runs"]
    assert running == []


def test_a_stopped_worker_loses_its_lease_and_its_late_report_is_refused(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "frozen", {"sleep": {"seconds": 2}})
    set_policy(api, job["id"], FAST_RETRY)
    run = trigger(api, job["id"])
    frozen_name = _wait_running(api, run["id"])["workerId"]
    frozen = fault_mesh.processes[frozen_name]
    frozen.signal(signal.SIGSTOP)
    try:
        final = wait_run_terminal(api, run["id"], timeout=60)
    finally:
        frozen.signal(signal.SIGCONT)
    assert final["state"] == "SUCCEEDED" and final["attempt"] == 2
    assert final["workerId"] != frozen_name
    assert final["attempts"][0]["error"]["kind"] == "LOST"

    # once resumed, the frozen worker reports attempt 1 and is refused by fencing
    log_path = fault_mesh.log_dir / f"{frozen_name}.log"

    def refused() -> bool:
        for line in log_path.read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("run_id") == run["id"] and entry.get("message", "").startswith("outcome not recorded"):
                return True
        return False

    wait_for(refused, timeout=30, message="the resumed worker's report to be refused")
    after = api.get(f"/api/runs/{run['id']}").json()
    assert after["state"] == "SUCCEEDED" and after["version"] == final["version"]
    assert len(after["attempts"]) == 2
