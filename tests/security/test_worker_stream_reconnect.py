"""Finding 2, the legitimate side: a worker whose stream died reconnects with the session token
its Welcome gave it and still owns its attempts; nobody else does. No worker process runs in
this mesh, so the test's own streams claim the runs."""

from __future__ import annotations

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh
from taskmesh.settings import DEV_WORKER_PASSWORD
from taskmesh.v1 import worker_service_pb2 as pb
from tests.e2e.helpers import create_job, trigger
from tests.security.conftest import login
from tests.security.worker_stream import RawStream, forged_success, refusal
from tests.support import wait_for


@pytest.fixture(scope="module")
def mesh_workers() -> int:
    return 0


@pytest.fixture(scope="module")
def worker_token(gateway: str) -> str:
    return login(gateway, "worker", DEV_WORKER_PASSWORD)


def _hello(worker_id: str, session_token: str = "") -> pb.Hello:
    return pb.Hello(worker_id=worker_id, executors=["noop"], slots=1, session_token=session_token)


def _welcomed(address: str, token: str, hello: pb.Hello) -> RawStream | None:
    stream = RawStream(address, token, hello)
    try:
        stream.welcome()
    except grpc.RpcError:
        stream.close()  # the scheduler has not yet noticed that the previous stream ended
        return None
    return stream


def test_a_reconnecting_worker_keeps_its_attempts_and_nobody_else_gets_them(
    api: httpx.Client, mesh: Mesh, worker_token: str
) -> None:
    address = mesh.settings.scheduler_address
    job = create_job(api, "reconnect", {"noop": {}})
    run_id = trigger(api, job["id"])["id"]
    ref = pb.AttemptRef(run_id=run_id, attempt=1)

    first = RawStream(address, worker_token, _hello("probe-1"))
    session_token = first.welcome().session_token
    assert first.claim(ref).granted
    assert refusal(address, worker_token, _hello("probe-1")) == grpc.StatusCode.ALREADY_EXISTS
    first.close()  # the stream dies with the attempt in flight

    # Once the old stream is gone its id may connect again, but without the token it owns nothing.
    same_id = wait_for(lambda: _welcomed(address, worker_token, _hello("probe-1")), message="probe-1 to reconnect")
    with same_id:
        assert ref in same_id.heartbeat(ref).lost
        assert not same_id.report(forged_success(ref)).recorded
    with RawStream(address, worker_token, _hello("probe-2")) as other:
        other.welcome()
        assert not other.report(forged_success(ref)).recorded
    assert api.get(f"/api/runs/{run_id}").json()["state"] == "RUNNING"

    # The worker itself, presenting its token, reports the outcome it kept.
    resumed = wait_for(
        lambda: _welcomed(address, worker_token, _hello("probe-1", session_token)), message="the session to resume"
    )
    with resumed:
        assert ref not in resumed.heartbeat(ref).lost
        ack = resumed.report(pb.Outcome(attempt=ref, status=pb.Outcome.SUCCEEDED))
        assert ack.settled and ack.recorded
    run = api.get(f"/api/runs/{run_id}").json()
    assert run["state"] == "SUCCEEDED" and run["workerId"] == "probe-1"


def test_a_session_token_must_be_one_the_scheduler_minted(mesh: Mesh, worker_token: str) -> None:
    hello = _hello("probe-3", session_token="guessable")
    assert refusal(mesh.settings.scheduler_address, worker_token, hello) == grpc.StatusCode.INVALID_ARGUMENT
