"""The README quickstart, through the Envoy gateway: REST in, a worker runs it, status comes back."""

import subprocess
from pathlib import Path

import httpx

from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal
from tests.support import wait_for

GRPCURL = str(Path(__import__("sys").executable).parent / "grpcurl")


def test_login_create_trigger_and_status_reaches_succeeded(gateway: str) -> None:
    login = httpx.post(f"{gateway}/api/auth/login", json={"username": "admin", "password": "admin"})
    assert login.status_code == 200
    body = login.json()
    assert body["tokenType"] == "Bearer" and body["expiresIn"] > 0
    headers = {"Authorization": f"Bearer {body['accessToken']}"}

    created = httpx.post(
        f"{gateway}/api/jobs", headers=headers, json={"name": unique("demo"), "executor": {"noop": {}}}
    )
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["executor"] == {"noop": {}}
    assert job["createTime"]

    run = httpx.post(f"{gateway}/api/jobs/{job['id']}/trigger", headers=headers).json()
    assert run["state"] == "QUEUED" and run["attempt"] == 1 and run["trigger"] == "MANUAL"

    def status() -> dict | None:
        response = httpx.get(f"{gateway}/api/jobs/{job['id']}/status", headers=headers)
        assert response.status_code == 200
        data = response.json()
        return data if data["state"] == "SUCCEEDED" else None

    final = wait_for(status, timeout=30, message="job status SUCCEEDED")
    assert final["lastRun"]["id"] == run["id"]
    assert final["lastRun"]["workerId"].startswith("worker-")
    assert final["lastRun"]["startTime"] and final["lastRun"]["finishTime"]


def test_sleep_job_runs_and_records_timestamps(api: httpx.Client) -> None:
    job = create_job(api, "sleepy", {"sleep": {"seconds": 0.3}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED"
    assert run["queueTime"] <= run["startTime"] <= run["finishTime"]


def test_grpcurl_lists_services_through_the_gateway(gateway: str) -> None:
    address = gateway.removeprefix("http://")
    output = subprocess.run([GRPCURL, "-plaintext", address, "list"], capture_output=True, text=True, timeout=30)
    assert output.returncode == 0, output.stderr
    assert "taskmesh.v1.JobService" in output.stdout.split()
    assert "taskmesh.v1.AuthService" in output.stdout.split()


def test_native_grpc_through_the_gateway(gateway: str, admin_token: str) -> None:
    address = gateway.removeprefix("http://")
    output = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-H",
            f"authorization: Bearer {admin_token}",
            "-d",
            '{"page_size": 1}',
            address,
            "taskmesh.v1.JobService/ListJobs",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert output.returncode == 0, output.stderr
    assert '"jobs"' in output.stdout
