"""Issue 8, finding 3: a token must not outlive its user's credentials.

Two api_server replicas (the gateway routes to the first, the second is called directly) and
the scheduler all check tokens. Deleting a user, changing its role or its password makes its
old tokens fail on every one of them within 5 s, also after a restart; a token signed with the
right key but living longer than the configured TTL, or without an issue time, is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import jwt
import pytest

from taskmesh.client import TaskmeshClient
from taskmesh.launcher import Mesh, free_port, wait_serving
from taskmesh.settings import DEV_JWT_SECRET
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc, worker_service_pb2_grpc
from tests.security.conftest import login
from tests.support import wait_for

PASSWORD = "a-long-password-1"
REVOKED_WITHIN = 5.0


@pytest.fixture(scope="module")
def replicas(mesh: Mesh) -> Iterator[list[str]]:
    """The gRPC addresses of both api_server replicas."""
    address = f"127.0.0.1:{free_port()}"
    extra = {"TASKMESH_API_LISTEN": address, "TASKMESH_API_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
    second = mesh.start_api_server("api_server-2", extra)
    wait_serving(address, process=second)
    yield [mesh.settings.api_address, address]


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _list_users_code(address: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        try:
            auth_service_pb2_grpc.AuthServiceStub(channel).ListUsers(
                auth_service_pb2.ListUsersRequest(), metadata=_bearer(token), timeout=10
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _create_user(api: httpx.Client, username: str, role: str) -> str:
    response = api.post("/api/users", json={"username": username, "password": PASSWORD, "role": role})
    assert response.status_code == 200, response.text
    return username


def _revoked_everywhere(gateway: str, replicas: list[str], token: str) -> None:
    """Within 5 s the token answers UNAUTHENTICATED on every replica and 401 through the gateway."""
    for address in replicas:
        wait_for(
            lambda a=address: _list_users_code(a, token) == grpc.StatusCode.UNAUTHENTICATED,  # type: ignore[misc]
            timeout=REVOKED_WITHIN,
            interval=0.1,
            message=f"the token to be refused by {address}",
        )
    response = httpx.get(f"{gateway}/api/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


def _works_everywhere(gateway: str, replicas: list[str], token: str) -> None:
    for address in replicas:
        # The second replica may not have refreshed yet: a token newer than its map makes it look.
        assert _list_users_code(address, token) == grpc.StatusCode.OK
    assert httpx.get(f"{gateway}/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_deleting_a_user_revokes_its_tokens_on_every_replica_even_if_recreated(
    gateway: str, api: httpx.Client, replicas: list[str]
) -> None:
    username = _create_user(api, "eve-deleted", "ADMIN")
    token = login(gateway, username, PASSWORD)
    _works_everywhere(gateway, replicas, token)
    assert api.delete(f"/api/users/{username}").status_code == 200
    _revoked_everywhere(gateway, replicas, token)
    _create_user(api, username, "ADMIN")  # the same name again: still not the old token's user
    _works_everywhere(gateway, replicas, login(gateway, username, PASSWORD))
    for address in replicas:
        assert _list_users_code(address, token) == grpc.StatusCode.UNAUTHENTICATED


def test_a_demoted_admin_loses_admin_at_once(gateway: str, api: httpx.Client, replicas: list[str]) -> None:
    username = _create_user(api, "mallory-demoted", "ADMIN")
    token = login(gateway, username, PASSWORD)
    _works_everywhere(gateway, replicas, token)
    response = api.patch(f"/api/users/{username}", json={"role": "VIEWER"})
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "VIEWER"
    _revoked_everywhere(gateway, replicas, token)
    viewer = login(gateway, username, PASSWORD)
    assert httpx.get(f"{gateway}/api/users", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403


def test_a_password_change_revokes_the_old_tokens(gateway: str, api: httpx.Client, replicas: list[str]) -> None:
    username = _create_user(api, "oscar-password", "ADMIN")
    token = login(gateway, username, PASSWORD)
    _works_everywhere(gateway, replicas, token)
    new_password = "another-long-password-2"
    assert api.patch(f"/api/users/{username}", json={"password": new_password}).status_code == 200
    _revoked_everywhere(gateway, replicas, token)
    _works_everywhere(gateway, replicas, login(gateway, username, new_password))


def test_update_user_needs_a_change_and_an_existing_user(api: httpx.Client) -> None:
    response = api.patch("/api/users/admin", json={})
    assert response.status_code == 400 and "role" in response.json()["message"]
    assert api.patch("/api/users/nobody-here", json={"role": "VIEWER"}).status_code == 404
    own = api.patch("/api/users/admin", json={"role": "VIEWER"})  # the caller is admin
    assert own.status_code == 400 and "own role" in own.json()["message"]


def test_revoked_tokens_stay_revoked_after_a_restart(
    gateway: str, api: httpx.Client, mesh: Mesh, replicas: list[str], admin_token: str
) -> None:
    username = _create_user(api, "rita-restart", "ADMIN")
    token = login(gateway, username, PASSWORD)
    assert api.delete(f"/api/users/{username}").status_code == 200
    _revoked_everywhere(gateway, replicas, token)
    for name, address in (("api_server", replicas[0]), ("api_server-2", replicas[1])):
        process = mesh.processes[name]
        process.stop()
        restarted = mesh.spawn(name, process.command, process.env)
        wait_serving(address, process=restarted)
    for address in replicas:
        assert _list_users_code(address, token) == grpc.StatusCode.UNAUTHENTICATED
        assert _list_users_code(address, admin_token) == grpc.StatusCode.OK  # a live user's token survives


def _connect_code(mesh: Mesh, token: str) -> grpc.StatusCode:
    """How the scheduler answers a WorkerService stream that says nothing and gives up after 2 s."""
    with grpc.insecure_channel(mesh.settings.scheduler_address) as channel:
        stream = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(
            iter(()), metadata=_bearer(token), timeout=2
        )
        try:
            for _ in stream:
                pass
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_the_scheduler_refuses_a_revoked_worker_token(gateway: str, api: httpx.Client, mesh: Mesh) -> None:
    username = _create_user(api, "walter-worker", "WORKER")
    token = login(gateway, username, PASSWORD)
    assert _connect_code(mesh, token) != grpc.StatusCode.UNAUTHENTICATED
    assert api.delete(f"/api/users/{username}").status_code == 200
    wait_for(
        lambda: _connect_code(mesh, token) == grpc.StatusCode.UNAUTHENTICATED,
        timeout=REVOKED_WITHIN + 2,  # each probe itself may take up to 2 s
        interval=0.1,
        message="the scheduler to refuse the deleted worker's token",
    )


def _forged(admin_token: str, **claims: object) -> str:
    """A token signed with the development key (the mesh's key), for the admin account."""
    current = jwt.decode(admin_token, options={"verify_signature": False})
    payload = {key: current[key] for key in ("sub", "role", "iss", "ver")}
    return jwt.encode({**payload, **claims}, DEV_JWT_SECRET, algorithm="HS256")


def test_a_token_living_longer_than_the_ttl_is_refused_even_when_signed_right(
    gateway: str, admin_token: str
) -> None:
    now = int(time.time())

    def status(token: str) -> int:
        return httpx.get(f"{gateway}/api/users", headers={"Authorization": f"Bearer {token}"}).status_code

    assert status(_forged(admin_token, iat=now, exp=now + 60)) == 200  # the key and claims are right
    ten_years = _forged(admin_token, iat=now, exp=now + 10 * 365 * 86400)
    response = httpx.get(f"{gateway}/api/users", headers={"Authorization": f"Bearer {ten_years}"})
    assert response.status_code == 401 and "longer" in response.json()["message"]
    assert status(_forged(admin_token, exp=now + 60)) == 401  # no iat


def test_the_python_client_changes_a_role(api: httpx.Client, mesh: Mesh) -> None:
    username = _create_user(api, "vera-client", "OPERATOR")
    address = f"127.0.0.1:{mesh.settings.gateway_port}"
    with TaskmeshClient(address, username="admin", password="admin") as client:
        assert client.update_user(username, role="viewer").role == auth_service_pb2.VIEWER
        assert client.update_user(username, password="yet-another-password").role == auth_service_pb2.VIEWER
