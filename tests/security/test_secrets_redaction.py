"""Finding 4: no secret reaches a viewer, and no job reaches the worker's settings.

Header and env values of jobs are write-only: every role reads them back as <redacted> over
REST and native gRPC, and a redacted value sent back keeps the stored one (for the same
destination only). Shell jobs start with a minimal environment, and the worker itself holds
neither the database URL nor the JWT key nor the admin password."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh
from taskmesh.v1 import job_service_pb2, job_service_pb2_grpc
from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal
from tests.security.conftest import login
from tests.support import wait_for

REDACTED = "<redacted>"
JWT_SECRET = "security-test-jwt-secret-0123456789abcdef"
ADMIN_PASSWORD = "security-test-admin-password"
HEADER_SECRET = "Bearer header-s3cret-value"
ENV_SECRET = "env-s3cret-value"
# What the mesh's processes are given and no job may print.
SERVER_SECRETS = ("TASKMESH_DATABASE_URL", "TASKMESH_JWT_SECRET", "TASKMESH_ADMIN_PASSWORD", "TASKMESH_REDIS_URL")
WORKER_SECRETS = ("TASKMESH_AMQP_URL", "TASKMESH_WORKER_PASSWORD")


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    # Set explicitly, so that the mesh's environment holds every secret a job must not see.
    return {
        "TASKMESH_JWT_SECRET": JWT_SECRET,
        "TASKMESH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TASKMESH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TASKMESH_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "TASKMESH_WORKER_PASSWORD": "security-test-worker-password",
    }


@pytest.fixture(scope="module")
def admin_token(gateway: str) -> str:
    def attempt() -> str | None:
        try:
            return login(gateway, "admin", ADMIN_PASSWORD)
        except (httpx.TransportError, AssertionError):
            return None

    return wait_for(attempt, timeout=30, interval=0.2, message="a login through the gateway")


def _user(api: httpx.Client, gateway: str, role: str) -> dict[str, str]:
    name = unique(role.lower())
    created = api.post("/api/users", json={"username": name, "password": f"{role}-password-1", "role": role})
    assert created.status_code == 200, created.text
    return {"Authorization": f"Bearer {login(gateway, name, f'{role}-password-1')}"}


@pytest.fixture(scope="module")
def viewer(api: httpx.Client, gateway: str) -> dict[str, str]:
    return _user(api, gateway, "VIEWER")


@pytest.fixture(scope="module")
def operator(api: httpx.Client, gateway: str) -> dict[str, str]:
    return _user(api, gateway, "OPERATOR")


@pytest.fixture(scope="module")
def http_job(api: httpx.Client) -> dict[str, Any]:
    headers = {"Authorization": HEADER_SECRET, "X-Api-Key": "key-s3cret"}
    return create_job(api, "secret-http", {"http": {"url": "http://127.0.0.1:9/hook", "headers": headers}})


@pytest.fixture(scope="module")
def shell_job(api: httpx.Client) -> dict[str, Any]:
    # Compares with the value reversed: the secret itself must not appear in the job.
    check = f"import os, sys; sys.exit(os.environ['API_KEY'][::-1] != {ENV_SECRET[::-1]!r})"
    program = [sys.executable, "-c", check]
    return create_job(api, "secret-shell", {"shell": {"argv": program, "env": {"API_KEY": ENV_SECRET}}})


@pytest.fixture(scope="module")
def grpc_channel(gateway: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.removeprefix("http://")) as channel:
        yield channel


def _assert_redacted(job: dict[str, Any]) -> None:
    executor = job["executor"]
    values = executor["http"]["headers"] if "http" in executor else executor["shell"]["env"]
    assert values and set(values.values()) == {REDACTED}, job


def test_the_creator_already_gets_redacted_values(http_job: dict[str, Any], shell_job: dict[str, Any]) -> None:
    _assert_redacted(http_job)
    _assert_redacted(shell_job)
    assert set(http_job["executor"]["http"]["headers"]) == {"Authorization", "X-Api-Key"}


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_no_role_reads_header_or_env_values_over_rest(
    request: pytest.FixtureRequest,
    gateway: str,
    api: httpx.Client,
    http_job: dict[str, Any],
    shell_job: dict[str, Any],
    role: str,
) -> None:
    headers = dict(api.headers) if role == "admin" else request.getfixturevalue(role)
    for job in (http_job, shell_job):
        response = httpx.get(f"{gateway}/api/jobs/{job['id']}", headers=headers)
        assert response.status_code == 200, response.text
        _assert_redacted(response.json())
        assert HEADER_SECRET not in response.text and ENV_SECRET not in response.text
    listed = httpx.get(f"{gateway}/api/jobs", params={"pageSize": 1000}, headers=headers)
    assert listed.status_code == 200
    assert HEADER_SECRET not in listed.text and ENV_SECRET not in listed.text and "key-s3cret" not in listed.text


def test_a_viewer_reads_redacted_values_over_native_grpc(
    grpc_channel: grpc.Channel, viewer: dict[str, str], http_job: dict[str, Any], shell_job: dict[str, Any]
) -> None:
    stub = job_service_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", viewer["Authorization"]),)
    http = stub.GetJob(job_service_pb2.GetJobRequest(id=http_job["id"]), metadata=metadata, timeout=10)
    assert set(http.executor.http.headers.values()) == {REDACTED}
    shell = stub.GetJob(job_service_pb2.GetJobRequest(id=shell_job["id"]), metadata=metadata, timeout=10)
    assert dict(shell.executor.shell.env) == {"API_KEY": REDACTED}
    listed = stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000), metadata=metadata, timeout=10)
    assert ENV_SECRET.encode() not in listed.SerializeToString()
    assert HEADER_SECRET.encode() not in listed.SerializeToString()


def test_a_redacted_value_sent_back_keeps_the_stored_one(
    gateway: str, api: httpx.Client, operator: dict[str, str], shell_job: dict[str, Any]
) -> None:
    """Read, edit and write back (what `taskmesh jobs update` does): the secret survives."""
    job = httpx.get(f"{gateway}/api/jobs/{shell_job['id']}", headers=operator).json()
    job["executor"]["shell"]["timeout"] = "30s"
    updated = httpx.patch(
        f"{gateway}/api/jobs/{job['id']}",
        params={"updateMask": "executor"},
        json={"executor": job["executor"]},
        headers=operator,
    )
    assert updated.status_code == 200, updated.text
    _assert_redacted(updated.json())
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED", run  # the program checks API_KEY is still the real value


def test_a_redacted_value_cannot_follow_a_new_destination(
    gateway: str, operator: dict[str, str], http_job: dict[str, Any], shell_job: dict[str, Any]
) -> None:
    http = dict(http_job["executor"])
    http["http"] = {**http["http"], "url": "http://127.0.0.2:9/elsewhere"}
    moved = httpx.patch(f"{gateway}/api/jobs/{http_job['id']}", json={"executor": http}, headers=operator)
    assert moved.status_code == 400, moved.text
    assert "job.executor.http.headers." in moved.json()["message"]
    shell = {"shell": {**shell_job["executor"]["shell"], "argv": ["env"]}}
    changed = httpx.patch(f"{gateway}/api/jobs/{shell_job['id']}", json={"executor": shell}, headers=operator)
    assert changed.status_code == 400, changed.text
    assert "job.executor.shell.env.API_KEY" in changed.json()["message"]


def test_a_new_job_cannot_hold_the_placeholder(api: httpx.Client) -> None:
    response = api.post(
        "/api/jobs",
        json={"name": unique("placeholder"), "executor": {"shell": {"argv": ["env"], "env": {"K": REDACTED}}}},
    )
    assert response.status_code == 400, response.text
    assert "job.executor.shell.env.K" in response.json()["message"]


def _logs(api: httpx.Client, run_id: str) -> str:
    response = api.get(f"/api/runs/{run_id}/logs", params={"pageSize": 10000})
    assert response.status_code == 200, response.text
    return "\n".join(line["text"] for line in response.json()["lines"])


def test_a_shell_job_sees_a_minimal_environment(api: httpx.Client) -> None:
    job = create_job(api, "print-env", {"shell": {"argv": ["env"], "env": {"OWN": "mine"}}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED", run
    logs, excerpt = _logs(api, run["id"]), run["result"]["shell"]["outputExcerpt"]
    names = {line.split("=", 1)[0] for line in logs.splitlines() if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "TZ", "OWN"} | {
        "TASKMESH_RUN_ID",
        "TASKMESH_ATTEMPT",
        "TASKMESH_JOB_ID",
        "TASKMESH_JOB_NAME",
        "TASKMESH_IDEMPOTENCY_KEY",  # parameters and outputs (README "Parameters, templates and outputs")
        "TASKMESH_OUTPUT",
    }, names
    assert f"TASKMESH_RUN_ID={run['id']}" in logs and "OWN=mine" in logs and "PATH=" in logs
    for text in (logs, excerpt):
        for name in (*SERVER_SECRETS, *WORKER_SECRETS):
            assert name not in text
        for value in (JWT_SECRET, ADMIN_PASSWORD, "security-test-worker-password"):
            assert value not in text


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_workers_and_the_gateway_do_not_hold_the_server_secrets(mesh: Mesh) -> None:
    worker = _environ(mesh.processes["worker-1"].pid)
    for name in SERVER_SECRETS:
        assert name not in worker, name
    assert JWT_SECRET not in worker.values() and ADMIN_PASSWORD not in worker.values()
    assert "TASKMESH_AMQP_URL" in worker and "TASKMESH_WORKER_PASSWORD" in worker  # what it does need
    gateway = _environ(mesh.processes["gateway"].pid)
    for name in (*SERVER_SECRETS, *WORKER_SECRETS):
        assert name not in gateway, name
    assert "TASKMESH_DATABASE_URL" in _environ(mesh.processes["api_server"].pid)
