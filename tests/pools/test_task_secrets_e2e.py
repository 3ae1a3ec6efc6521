"""Python tasks read the secrets their job names (PythonExecutor.secrets) as ctx.secrets, in the
worker's process and in an isolated child; what they print, log and return comes back masked."""

from __future__ import annotations

import json

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.pools.conftest import worker_env, workers_connected
from tests.support import wait_for

VALUE = "tm-task-secret-0c9e4b1d"


@pytest.fixture(scope="module", autouse=True)
def one_worker(mesh: Mesh, api: httpx.Client) -> None:
    mesh.start_worker(extra_env=worker_env())
    wait_for(lambda: workers_connected(api, 1), timeout=30, interval=0.1, message="the worker to connect")
    created = api.post("/api/secrets", json={"name": "API_TOKEN", "value": VALUE})
    assert created.status_code == 200, created.text


@pytest.mark.parametrize("task", ["t.uses_secret", "t.uses_secret_isolated"])
def test_a_task_reads_its_declared_secret_and_every_trace_is_masked(api: httpx.Client, task: str) -> None:
    job = create_job(api, "py-secret", {"python": {"task": task, "secrets": ["API_TOKEN"]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=60)
    assert run["state"] == "SUCCEEDED", run
    assert run["output"]["token"] == "***"
    if "length" in run["output"]:
        assert run["output"]["length"] == str(len(VALUE))  # the task had the real value
    logs = api.get(f"/api/runs/{run['id']}/logs").json()
    texts = [line["text"] for line in logs["lines"]]
    assert "printed ***" in texts, texts
    assert VALUE not in json.dumps(run) + json.dumps(logs)


def test_a_task_without_the_declaration_gets_no_secret(api: httpx.Client) -> None:
    job = create_job(api, "py-undeclared", {"python": {"task": "t.uses_secret"}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=60)
    assert run["state"] == "FAILED" and "API_TOKEN" in run["error"]["message"], run


def test_a_bad_secret_name_is_refused_naming_the_field(api: httpx.Client) -> None:
    job = {"name": "py-bad-secret", "executor": {"python": {"task": "t.uses_secret", "secrets": ["not-a-name"]}}}
    answer = api.post("/api/jobs", json=job)
    assert answer.status_code == 400 and "job.executor.python.secrets[0]" in answer.json()["message"], answer.text
