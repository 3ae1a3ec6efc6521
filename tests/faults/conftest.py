"""A mesh of its own for the fault tests: short leases and grace periods so that dead or hung
workers are noticed in seconds, its own Redis so that a test may stop it, and processes the
tests kill. Nothing here touches the shared services beyond this mesh's own database,
queues and connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.support import EffectServer, Isolation, PrivateRedis, wait_for

pytestmark = pytest.mark.e2e

FAULT_SETTINGS = {
    "TASKMESH_LEASE_SECONDS": "3",
    "TASKMESH_WORKER_KILL_GRACE_SECONDS": "1",
    "TASKMESH_TIMEOUT_GRACE_SECONDS": "2",
    "TASKMESH_AMQP_HEARTBEAT_SECONDS": "2",
    "TASKMESH_WORKER_SHELL_ENABLED": "true",
    "TASKMESH_STATUS_CACHE_TTL": "60",
}


@pytest.fixture(scope="module")
def isolation() -> Iterator[Isolation]:
    isolation = Isolation.create("f")
    yield isolation
    isolation.drop()


@pytest.fixture(scope="module")
def fault_mesh(
    isolation: Isolation, private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    env = {**os.environ, **isolation.env(), **FAULT_SETTINGS, "TASKMESH_REDIS_URL": private_redis.url}
    mesh = Mesh(env, log_dir=tmp_path_factory.mktemp("fault-logs"))
    try:
        mesh.start_all(workers=2)
        yield mesh
    finally:
        mesh.stop_all()


@pytest.fixture(scope="module")
def api(fault_mesh: Mesh) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{fault_mesh.settings.gateway_port}"

    def login() -> str | None:  # the gateway may still be re-admitting a server a test upset
        try:
            response = httpx.post(f"{base}/api/auth/login", json={"username": "admin", "password": "admin"})
        except httpx.TransportError:
            return None
        return str(response.json()["accessToken"]) if response.status_code == 200 else None

    token = wait_for(login, timeout=30, interval=0.2, message="a login through the gateway")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def effects() -> Iterator[EffectServer]:
    server = EffectServer()
    yield server
    server.close()


def set_policy(
    api: httpx.Client,
    job_id: str,
    retry_policy: dict[str, Any] | None = None,
    attempt_timeout: float | None = None,
) -> None:
    """Set a job's retry policy and attempt timeout through the API (UpdateJob with a mask)."""
    body: dict[str, Any] = {}
    paths = []
    if retry_policy is not None:
        body["retryPolicy"] = retry_policy
        paths.append("retry_policy")
    if attempt_timeout is not None:
        body["attemptTimeout"] = f"{attempt_timeout}s"
        paths.append("attempt_timeout")
    response = api.patch(f"/api/jobs/{job_id}", params={"updateMask": ",".join(paths)}, json=body)
    assert response.status_code == 200, response.text


def ensure_workers(mesh: Mesh, count: int = 2) -> None:
    """Replace workers a test killed, so that the next test starts with `count` alive."""
    alive = [p for name, p in mesh.processes.items() if name.startswith("worker") and p.alive()]
    for _ in range(count - len(alive)):
        mesh.start_worker()
