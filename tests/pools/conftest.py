"""A mesh of its own per module for the pool and Python task tests: workers load the registries
of tests.pools.registries (the repository is on their PYTHONPATH)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.support import Isolation, wait_for

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])
FULL = "tests.pools.registries:full"
OLDER = "tests.pools.registries:older"


def worker_env(tasks: str = FULL) -> dict[str, str]:
    return {"TASKMESH_WORKER_TASKS": tasks, "PYTHONPATH": ROOT}


@pytest.fixture(scope="module")
def isolation() -> Iterator[Isolation]:
    isolation = Isolation.create("p")
    yield isolation
    isolation.drop()


@pytest.fixture(scope="module")
def mesh(isolation: Isolation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """api_server, scheduler, gateway; no worker (each module starts the ones it needs)."""
    env = {**os.environ, **isolation.env(), "TASKMESH_WORKER_KILL_GRACE_SECONDS": "0.5"}
    mesh = Mesh(env, log_dir=tmp_path_factory.mktemp("pool-logs"))
    try:
        mesh.start_all(workers=0)
        yield mesh
    finally:
        mesh.stop_all()


@pytest.fixture(scope="module")
def gateway(mesh: Mesh) -> str:
    return f"http://127.0.0.1:{mesh.settings.gateway_port}"


def login(gateway: str, username: str, password: str) -> str:
    response = httpx.post(f"{gateway}/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["accessToken"])


@pytest.fixture(scope="module")
def api(gateway: str) -> Iterator[httpx.Client]:
    def attempt() -> str | None:
        try:
            return login(gateway, "admin", "admin")
        except (httpx.TransportError, AssertionError):
            return None

    token = wait_for(attempt, timeout=30, interval=0.2, message="a login through the gateway")
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


def workers_connected(api: httpx.Client, count: int) -> list[dict[str, object]] | None:
    workers = api.get("/api/workers").json().get("workers", [])
    return workers if len(workers) >= count else None
