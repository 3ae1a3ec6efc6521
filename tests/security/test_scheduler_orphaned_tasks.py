"""Finding 14: worker streams that end while the scheduler waits for something to send them
(here during a Redis outage) leave no orphaned asyncio task behind: the scheduler never logs
"Task was destroyed but it is pending!"."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh
from taskmesh.v1 import worker_service_pb2 as pb
from taskmesh.v1 import worker_service_pb2_grpc
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.security.conftest import login
from tests.support import PrivateRedis

STREAMS = 60


@pytest.fixture(scope="module")
def mesh_settings(private_redis: PrivateRedis) -> dict[str, str]:
    return {"TASKMESH_REDIS_URL": private_redis.url}


def _open_and_drop_stream(address: str, token: str, worker_id: str) -> None:
    """Connect as a worker, wait for the welcome, then go away while the scheduler waits."""
    release = threading.Event()

    def requests() -> Iterator[pb.ConnectRequest]:
        yield pb.ConnectRequest(hello=pb.Hello(worker_id=worker_id, executors=["noop"], slots=1))
        release.wait(30)  # the stream stays open until we cancel it

    with grpc.insecure_channel(address) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        call = stub.Connect(requests(), metadata=(("authorization", f"Bearer {token}"),))
        welcome = next(call)
        assert welcome.WhichOneof("message") == "welcome"
        call.cancel()
    release.set()


def test_streams_ending_during_a_redis_outage_orphan_no_task(
    mesh: Mesh, gateway: str, api: httpx.Client, private_redis: PrivateRedis
) -> None:
    token = login(gateway, mesh.settings.worker_username, mesh.settings.worker_password)
    job = create_job(api, "orphans", {"noop": {}})
    private_redis.stop()
    try:
        for n in range(STREAMS):
            _open_and_drop_stream(mesh.settings.scheduler_address, token, f"probe-{n}")
        # Work keeps flowing meanwhile, and its garbage makes the collector reclaim whatever
        # the ended streams left behind (a pending task is reported when it is reclaimed).
        for _ in range(20):
            assert wait_run_terminal(api, trigger(api, job["id"])["id"])["state"] == "SUCCEEDED"
    finally:
        private_redis.start()
    assert wait_run_terminal(api, trigger(api, job["id"])["id"])["state"] == "SUCCEEDED"
    assert mesh.log_dir is not None
    scheduler_log = (mesh.log_dir / "scheduler.log").read_text()
    assert "probe-0 disconnected" in scheduler_log  # the streams really ended on the scheduler
    assert "Task was destroyed but it is pending" not in scheduler_log
