"""Issue 14, item 5: service accounts and API keys, against a real mesh.

A service account has a role and no password; its API keys are bearer credentials on REST and
gRPC, shown once, stored hashed, with an expiry and a last-used time. Revoking a key on one
api_server makes a second api_server (same database) refuse it within 5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from taskmesh.client import TaskmeshClient
from taskmesh.launcher import Mesh, free_port, wait_serving
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc, job_service_pb2, job_service_pb2_grpc
from tests.e2e.cli import cli_env, executable
from tests.support import wait_for

REVOKED_WITHIN = 5.0


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    return {"TASKMESH_API_KEY_LAST_USED_FLUSH_SECONDS": "0.3"}


@pytest.fixture(scope="module")
def replicas(mesh: Mesh) -> Iterator[list[str]]:
    """Both api_servers' gRPC addresses: the gateway's and a second one on the same database."""
    address = f"127.0.0.1:{free_port()}"
    extra = {"TASKMESH_API_LISTEN": address, "TASKMESH_API_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
    second = mesh.start_api_server("api_server-keys-2", extra)
    wait_serving(address, process=second)
    yield [mesh.settings.api_address, address]


def _account(api: httpx.Client, name: str, role: str) -> dict[str, Any]:
    response = api.post("/api/service-accounts", json={"name": name, "role": role, "description": "ci"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _key(api: httpx.Client, account: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/service-accounts/{account}/keys", json={"name": "ci-deploy", **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _grpc_code(address: str, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        try:
            job_service_pb2_grpc.JobServiceStub(channel).ListJobs(
                job_service_pb2.ListJobsRequest(), metadata=(("authorization", f"Bearer {key}"),), timeout=10
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _rest(gateway: str, key: str, method: str = "GET", path: str = "/api/jobs", **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway}{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)


def test_a_key_is_shown_once_stored_hashed_and_works_on_rest_and_grpc(
    gateway: str, api: httpx.Client, mesh: Mesh
) -> None:
    account = _account(api, "deployer", "OPERATOR")
    assert account["role"] == "OPERATOR" and account["createdBy"] == "admin"
    created = _key(api, "deployer")
    key, key_id = created["key"], created["apiKey"]["id"]
    assert key.startswith(f"tmk_{key_id}_") and len(key) == len("tmk_") + 16 + 1 + 43
    # REST and gRPC, and an operator's write.
    assert _rest(gateway, key).status_code == 200
    assert _grpc_code(mesh.settings.api_address, key) == grpc.StatusCode.OK
    job = _rest(gateway, key, "POST", "/api/jobs", json={"name": "by-key", "executor": {"noop": {}}})
    assert job.status_code == 200, job.text
    # But not an admin's method.
    assert _rest(gateway, key, path="/api/users").status_code == 403
    # Listed without the secret; the database holds only its SHA-256.
    listed = api.get("/api/service-accounts/deployer/keys").json()["apiKeys"]
    assert [k["id"] for k in listed] == [key_id] and key not in str(listed)
    assert listed[0]["display"] == f"tmk_{key_id}_..."
    with psycopg.connect(mesh.settings.database_url.replace("+psycopg", "")) as conn:
        stored = conn.execute("SELECT api_keys::text FROM api_keys").fetchall()
    assert stored and all(key not in row[0] and key.split("_")[-1] not in row[0] for row in stored)


def test_a_malformed_or_unknown_key_is_refused(gateway: str, api: httpx.Client) -> None:
    assert _rest(gateway, "tmk_nonsense").status_code == 401
    unknown = "tmk_0123456789abcdef_" + "A" * 43
    response = _rest(gateway, unknown)
    assert response.status_code == 401 and "API key" in response.json()["message"]
    _account(api, "forger", "VIEWER")
    real = _key(api, "forger")["key"]
    tampered = real[:-1] + ("A" if real[-1] != "A" else "B")  # right id, wrong secret
    assert _rest(gateway, tampered).status_code == 401
    assert _rest(gateway, real).status_code == 200


def test_a_viewer_account_reads_but_cannot_write(gateway: str, api: httpx.Client) -> None:
    _account(api, "dashboards", "VIEWER")
    key = _key(api, "dashboards")["key"]
    assert _rest(gateway, key).status_code == 200
    response = _rest(gateway, key, "POST", "/api/jobs", json={"name": "nope", "executor": {"noop": {}}})
    assert response.status_code == 403


def test_service_accounts_cannot_log_in_nor_be_workers_nor_be_changed_as_users(
    gateway: str, api: httpx.Client
) -> None:
    _account(api, "robot", "OPERATOR")
    login = httpx.post(f"{gateway}/api/auth/login", json={"username": "robot", "password": "whatever-123"})
    assert login.status_code == 401
    response = api.post("/api/service-accounts", json={"name": "robot-w", "role": "WORKER"})
    assert response.status_code == 400 and "role" in response.json()["message"]
    # Not a user: UpdateUser cannot give it a password, DeleteUser does not see it, ListUsers neither.
    assert api.patch("/api/users/robot", json={"password": "a-long-password-1"}).status_code == 404
    assert api.delete("/api/users/robot").status_code == 404
    assert "robot" not in [u["username"] for u in api.get("/api/users").json()["users"]]
    # A name is one principal: a user cannot take a service account's.
    taken = api.post("/api/users", json={"username": "robot", "password": "a-long-password-1", "role": "ADMIN"})
    assert taken.status_code == 409
    # Keys only for service accounts.
    assert api.post("/api/service-accounts/admin/keys", json={"name": "x"}).status_code == 404
    # An admin service account, when an admin asks for it by name.
    assert _account(api, "terraform", "ADMIN")["role"] == "ADMIN"


def test_an_expired_key_is_refused(gateway: str, api: httpx.Client) -> None:
    _account(api, "shortlived", "VIEWER")
    created = _key(api, "shortlived", ttl="2s")
    assert _rest(gateway, created["key"]).status_code == 200
    expires = datetime.fromisoformat(created["apiKey"]["expireTime"].replace("Z", "+00:00"))
    assert (expires - datetime.fromisoformat(created["apiKey"]["createTime"].replace("Z", "+00:00"))).seconds <= 3
    response = wait_for(
        lambda: (r := _rest(gateway, created["key"])).status_code == 401 and r,
        timeout=10,
        interval=0.2,
        message="the key to expire",
    )
    assert "expired" in response.json()["message"]
    too_long = api.post("/api/service-accounts/shortlived/keys", json={"name": "x", "ttl": "99999999s"})
    assert too_long.status_code == 400 and "ttl" in too_long.json()["message"]


def test_last_used_time_is_written_without_a_row_per_call(gateway: str, api: httpx.Client) -> None:
    _account(api, "poller", "VIEWER")
    created = _key(api, "poller")
    assert "lastUsedTime" not in created["apiKey"]
    for _ in range(20):
        assert _rest(gateway, created["key"]).status_code == 200
    keys = wait_for(
        lambda: (
            (k := api.get("/api/service-accounts/poller/keys").json()["apiKeys"]) and "lastUsedTime" in k[0] and k
        ),
        timeout=10,
        interval=0.1,
        message="the key's last-used time",
    )
    used = datetime.fromisoformat(keys[0]["lastUsedTime"].replace("Z", "+00:00"))
    assert used >= datetime.fromisoformat(keys[0]["createTime"].replace("Z", "+00:00"))


def test_revoking_a_key_on_one_api_server_is_refused_by_another_within_5_s(
    gateway: str, api: httpx.Client, replicas: list[str]
) -> None:
    _account(api, "revokee", "OPERATOR")
    created = _key(api, "revokee")
    key, key_id = created["key"], created["apiKey"]["id"]
    # Made on the first replica: the second one finds it at once (an unknown key makes it look).
    for address in replicas:
        assert _grpc_code(address, key) == grpc.StatusCode.OK
    # Revoked through the first replica (the gateway's) ...
    with grpc.insecure_channel(replicas[0]) as channel:
        auth_service_pb2_grpc.AuthServiceStub(channel).RevokeApiKey(
            auth_service_pb2.RevokeApiKeyRequest(service_account="revokee", key_id=key_id),
            metadata=(("authorization", f"Bearer {api.headers['Authorization'].split()[1]}"),),
            timeout=10,
        )
    # ... refused by the second within 5 s, and by the first and the gateway.
    for address in reversed(replicas):
        wait_for(
            lambda a=address: _grpc_code(a, key) == grpc.StatusCode.UNAUTHENTICATED,  # type: ignore[misc]
            timeout=REVOKED_WITHIN,
            interval=0.1,
            message=f"the revoked key to be refused by {address}",
        )
    assert _rest(gateway, key).status_code == 401
    assert api.get("/api/service-accounts/revokee/keys").json().get("apiKeys", []) == []


def test_deleting_a_service_account_revokes_its_keys_everywhere(
    gateway: str, api: httpx.Client, replicas: list[str]
) -> None:
    _account(api, "retired", "OPERATOR")
    key = _key(api, "retired")["key"]
    for address in replicas:
        assert _grpc_code(address, key) == grpc.StatusCode.OK
    assert api.delete("/api/service-accounts/retired").status_code == 200
    for address in replicas:
        wait_for(
            lambda a=address: _grpc_code(a, key) == grpc.StatusCode.UNAUTHENTICATED,  # type: ignore[misc]
            timeout=REVOKED_WITHIN,
            interval=0.1,
            message=f"the deleted account's key to be refused by {address}",
        )
    assert api.get("/api/service-accounts/retired/keys").status_code == 404


def test_the_client_and_the_cli_take_taskmesh_api_key(
    gateway: str, api: httpx.Client, mesh: Mesh, tmp_path: Path
) -> None:
    _account(api, "scripted", "OPERATOR")
    key = _key(api, "scripted")["key"]
    server = f"127.0.0.1:{mesh.settings.gateway_port}"
    with TaskmeshClient(server, api_key=key) as client:
        assert client.create_job("client-by-key", {"noop": {}}).name == "client-by-key"
    env = {**cli_env(server, tmp_path / "config.json"), "TASKMESH_API_KEY": key}
    done = subprocess.run(
        [executable(), "jobs", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "client-by-key" in done.stdout
    # The environment variable alone is enough for the client.
    os.environ["TASKMESH_API_KEY"] = key
    try:
        with TaskmeshClient(server) as client:
            assert any(j.name == "client-by-key" for j in client.iter_jobs())
    finally:
        del os.environ["TASKMESH_API_KEY"]
    with pytest.raises(ValueError, match="tmk_"):
        TaskmeshClient(server, api_key="not-a-key")


def test_the_cli_manages_accounts_and_keys_and_reads_the_audit_log(
    gateway: str, admin_token: str, mesh: Mesh, tmp_path: Path
) -> None:
    server = f"127.0.0.1:{mesh.settings.gateway_port}"
    env = {**cli_env(server, tmp_path / "config.json"), "TASKMESH_TOKEN": admin_token}

    def cli(*args: str) -> str:
        done = subprocess.run([executable(), *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "cli-robot" in cli("service-accounts", "create", "cli-robot", "--role", "viewer")
    printed = cli("service-accounts", "create-key", "cli-robot", "--key-name", "nightly", "--ttl", "1d")
    key = next(line for line in printed.splitlines() if line.startswith("tmk_"))
    key_id = key.split("_")[1]
    assert _rest(gateway, key).status_code == 200
    assert key_id in cli("service-accounts", "keys", "cli-robot") and key not in cli(
        "service-accounts", "keys", "cli-robot"
    )
    cli("service-accounts", "revoke-key", "cli-robot", key_id)
    wait_for(lambda: _rest(gateway, key).status_code == 401, timeout=REVOKED_WITHIN, message="the revoked key")
    audit = cli("audit", "list", "--resource", f"apiKeys/{key_id}", "-o", "json")
    methods = [event["method"].rsplit("/", 1)[-1] for event in json.loads(audit)]
    assert methods == ["RevokeApiKey", "CreateApiKey"]
    assert key not in audit
