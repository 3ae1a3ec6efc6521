"""Finding 2: a worker stream cannot speak for another worker. A second Connect with a worker
token that names a live worker's id is refused, and a stream that never claimed an attempt
cannot report, log or heartbeat it: the run ends with the real worker's result."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh, free_port, wait_serving
from taskmesh.settings import DEV_WORKER_PASSWORD
from taskmesh.v1 import worker_service_pb2 as pb
from tests.e2e.helpers import create_job, gated_program, trigger, wait_run_terminal
from tests.security.conftest import login
from tests.security.worker_stream import RawStream, forged_success, refusal
from tests.support import wait_for


@pytest.fixture(scope="module")
def second_scheduler(mesh: Mesh) -> str:
    """Another scheduler of the same mesh: a worker_id live on one is refused on the other."""
    address = f"127.0.0.1:{free_port()}"
    process = mesh.start_scheduler(
        "scheduler-2",
        {
            "TASKMESH_SCHEDULER_LISTEN": address,
            "TASKMESH_SCHEDULER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "TASKMESH_SCHEDULER_ID": "scheduler-2",
        },
    )
    wait_serving(address, process=process)
    return address


def _running(api: httpx.Client, run_id: str) -> dict[str, str]:
    def running() -> dict[str, str] | None:
        run = api.get(f"/api/runs/{run_id}").json()
        return run if run.get("state") == "RUNNING" else None

    return wait_for(running, timeout=30, interval=0.1, message=f"run {run_id} to start")


def test_a_second_stream_cannot_speak_for_a_live_worker(
    api: httpx.Client, mesh: Mesh, gateway: str, second_scheduler: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job = create_job(api, "victim", {"shell": {"argv": gated_program(gate, 2)}})
    run_id = trigger(api, job["id"])["id"]
    assert _running(api, run_id)["workerId"] == "worker-1"
    token = login(gateway, "worker", DEV_WORKER_PASSWORD)
    address = mesh.settings.scheduler_address
    ref = pb.AttemptRef(run_id=run_id, attempt=1)

    # The live worker's id is refused, without a session token or with a made-up one, by the
    # scheduler it is connected to and by any other.
    for made_up in ("", secrets.token_urlsafe(32)):
        hello = pb.Hello(worker_id="worker-1", executors=["shell"], slots=1, session_token=made_up)
        assert refusal(address, token, hello) == grpc.StatusCode.ALREADY_EXISTS
        assert refusal(second_scheduler, token, hello) == grpc.StatusCode.ALREADY_EXISTS

    # A stream of its own never claimed the attempt: its report, heartbeat and logs are refused.
    with RawStream(address, token, pb.Hello(worker_id="intruder", executors=["shell"], slots=1)) as intruder:
        assert intruder.welcome().session_token
        intruder.log(ref, "injected by intruder")
        assert ref in intruder.heartbeat(ref).lost
        ack = intruder.report(forged_success(ref))
        assert ack.settled and not ack.recorded
    assert api.get(f"/api/runs/{run_id}").json()["state"] == "RUNNING"

    gate.touch()
    final = wait_run_terminal(api, run_id)
    assert final["state"] == "SUCCEEDED" and final["workerId"] == "worker-1"
    assert "forged" not in final["result"]["shell"].get("outputExcerpt", "")
    assert "line 1" in final["result"]["shell"]["outputExcerpt"]
    texts = [line["text"] for line in api.get(f"/api/runs/{run_id}/logs").json()["lines"]]
    assert "injected by intruder" not in texts and any("line 0" in text for text in texts)
