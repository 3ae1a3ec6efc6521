"""A mesh of its own for each security test module, started from the same console scripts
`make up` uses, on a private database, namespace and ports. A module that needs other settings
(production egress rules, short leases...) overrides the `mesh_settings` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.support import Isolation, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    """Extra TASKMESH_* settings for this module's mesh."""
    return {}


@pytest.fixture(scope="module")
def mesh_workers() -> int:
    return 1


@pytest.fixture(scope="module")
def isolation() -> Iterator[Isolation]:
    isolation = Isolation.create("s")
    yield isolation
    isolation.drop()


@pytest.fixture(scope="module")
def mesh(
    isolation: Isolation,
    mesh_settings: dict[str, str],
    mesh_workers: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mesh]:
    env = {**os.environ, **isolation.env(), "TASKMESH_WORKER_SHELL_ENABLED": "true", **mesh_settings}
    mesh = Mesh(env, log_dir=tmp_path_factory.mktemp("security-logs"))
    try:
        mesh.start_all(workers=mesh_workers)
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
def admin_token(gateway: str) -> str:
    def attempt() -> str | None:
        try:
            return login(gateway, "admin", "admin")
        except (httpx.TransportError, AssertionError):
            return None

    return wait_for(attempt, timeout=30, interval=0.2, message="a login through the gateway")


@pytest.fixture(scope="module")
def api(gateway: str, admin_token: str) -> Iterator[httpx.Client]:
    """An HTTP client logged in as admin, talking REST to the gateway."""
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as client:
        yield client
