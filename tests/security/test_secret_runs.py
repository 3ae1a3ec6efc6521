"""Secrets in runs, end to end through the gateway: resolved for the attempt that references
them, never stored, and masked in everything the run produces. After the runs, the plaintext is
searched for in the whole database (every table, as text) and in every process's log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.support import JsonEchoServer

VALUE = "tm-SECRET-value-5f1c9a77"


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    return {"TASKMESH_EGRESS_ALLOW_LOOPBACK": "true"}  # the test's receiver listens on 127.0.0.1


@pytest.fixture(scope="module")
def echo_server() -> Iterator[JsonEchoServer]:
    server = JsonEchoServer(lambda path, headers: {"you_sent": headers.get("Authorization", ""), "path": path})
    yield server
    server.close()


@pytest.fixture(scope="module")
def echo(echo_server: JsonEchoServer) -> str:
    return echo_server.base


@pytest.fixture(scope="module")
def secret(api: httpx.Client) -> str:
    created = api.post("/api/secrets", json={"name": "API_TOKEN", "value": VALUE})
    assert created.status_code == 200, created.text
    return "API_TOKEN"


def test_an_http_job_sends_the_secret_and_its_answer_is_masked(
    api: httpx.Client, echo: str, echo_server: JsonEchoServer, secret: str
) -> None:
    job = create_job(
        api,
        "uses-a-secret",
        {
            "http": {
                "url": echo + "/pay?key={{ secrets.API_TOKEN }}",
                "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
            }
        },
    )
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED", run
    sent = [(path, headers.get("Authorization")) for path, headers in echo_server.seen]
    assert (f"/pay?key={VALUE}", f"Bearer {VALUE}") in sent  # the receiver got the real value
    assert run["output"]["you_sent"] == "Bearer ***"
    assert VALUE not in json.dumps(run)


def test_a_shell_job_prints_the_secret_and_every_trace_is_masked(api: httpx.Client, secret: str) -> None:
    script = (
        "import json, os, sys\n"
        "token = os.environ['TOKEN']\n"
        "print('token is', token)\n"
        "print('argv has', sys.argv[1], file=sys.stderr)\n"
        "json.dump({'token': token}, open(os.environ['TASKMESH_OUTPUT'], 'w'))\n"
        "sys.exit('failing with ' + token)\n"
    )
    job = create_job(
        api,
        "prints-a-secret",
        {
            "shell": {
                "argv": [sys.executable, "-c", script, "{{ secrets.API_TOKEN }}"],
                "env": {"TOKEN": "{{ secrets['API_TOKEN'] }}"},
            }
        },
        retryPolicy={"maxAttempts": 1},
    )
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED", run
    logs = api.get(f"/api/runs/{run['id']}/logs").json()
    texts = [line["text"] for line in logs.get("lines", [])]
    assert "token is ***" in texts and "argv has ***" in texts, texts
    assert run["output"] == {"token": "***"}
    assert "failing with ***" in run["result"]["shell"]["outputExcerpt"], run["result"]
    assert VALUE not in json.dumps(run) + json.dumps(logs)


def test_a_missing_secret_fails_the_attempt_for_good_naming_it(api: httpx.Client) -> None:
    job = create_job(api, "missing-secret", {"shell": {"argv": ["echo", "{{ secrets.NOT_CREATED }}"]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED" and run["attempt"] == 1, run
    assert "NOT_CREATED" in run["error"]["message"] and not run["error"].get("retryable"), run["error"]


def test_the_plaintext_is_nowhere_in_the_database_or_the_logs(api: httpx.Client, mesh: Mesh, secret: str) -> None:
    # after the tests above (module order): their runs, attempts, logs and outbox rows are all there
    dump = subprocess.run(
        ["pg_dump", "--data-only", mesh.settings.database_url.replace("+psycopg", "")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "API_TOKEN" in dump  # the secret's row is in the dump, sealed
    assert VALUE not in dump
    assert mesh.log_dir is not None
    for log in mesh.log_dir.glob("*.log"):
        assert VALUE not in log.read_text(errors="replace"), log.name
