"""Parameters, templated executors and outputs through the gateway (REST), the Python client
and the CLI: parameters in (validated, 400 naming the path), templated http and shell jobs, the
output in GetRun, WatchRun's last event and `taskmesh runs get`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taskmesh.client import TaskmeshClient
from taskmesh.v1 import run_pb2
from tests.e2e.cli import Taskmesh
from tests.e2e.helpers import create_job, unique, wait_run_terminal
from tests.support import JsonEchoServer

pytestmark = pytest.mark.e2e

SCHEMA = {
    "type": "object",
    "properties": {"customer_id": {"type": "integer"}, "region": {"type": "string"}},
    "required": ["customer_id"],
}


@pytest.fixture(scope="module")
def customer_server() -> Iterator[JsonEchoServer]:
    server = JsonEchoServer(lambda path, headers: {"path": path, "customer": path.rsplit("/", 1)[-1]})
    yield server
    server.close()


@pytest.fixture(scope="module")
def customers(customer_server: JsonEchoServer) -> str:
    return customer_server.base


def _trigger(
    api: httpx.Client, job_id: str, parameters: dict[str, Any] | None = None, **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = dict(fields)
    if parameters is not None:
        body["parameters"] = parameters
    return api.post(f"/api/jobs/{job_id}/trigger", json=body)


def test_a_templated_http_job_calls_the_url_its_parameters_name_and_keeps_the_json_answer(
    api: httpx.Client, customers: str, customer_server: JsonEchoServer
) -> None:
    job = create_job(
        api,
        "customer-sync",
        {
            "http": {
                "url": customers + "/customers/{{ params.customer_id }}",
                "headers": {"X-Region": "{{ params.region }}"},
            }
        },
        parameters={"region": "eu"},
        parameterSchema=SCHEMA,
    )
    assert job["parameters"] == {"region": "eu"} and job["parameterSchema"]["required"] == ["customer_id"]
    response = _trigger(api, job["id"], {"customer_id": 42})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"region": "eu", "customer_id": 42}
    run = wait_run_terminal(api, response.json()["id"])
    assert run["state"] == "SUCCEEDED", run
    assert run["output"] == {"path": "/customers/42", "customer": "42"}
    assert run["parameters"] == {"region": "eu", "customer_id": 42}
    attempt = run["attempts"][0]
    assert attempt["output"] == run["output"]
    assert attempt["renderedRequest"]["http"]["url"] == customers + "/customers/42"
    assert attempt["renderedRequest"]["http"]["headers"] == {"X-Region": "<redacted>"}
    headers = next(h for p, h in customer_server.seen if p == "/customers/42")
    assert headers["X-Region"] == "eu"
    assert headers["Idempotency-Key"] == run["id"]
    listed = api.get("/api/runs", params={"jobId": job["id"]}).json()["runs"]
    assert listed[0]["parameters"] == {"region": "eu", "customer_id": 42}


def test_refused_parameters_are_a_400_naming_the_json_path_and_create_no_run(api: httpx.Client) -> None:
    job = create_job(api, "validated", {"noop": {}}, parameterSchema=SCHEMA)
    response = _trigger(api, job["id"], {"customer_id": "x"})
    assert response.status_code == 400
    assert response.json()["message"] == "parameters.customer_id: 'x' is not of type 'integer'"
    batch = api.post(
        "/api/jobs:batchTrigger",
        json={
            "requests": [{"id": job["id"], "parameters": {"customer_id": 1}}, {"id": job["id"], "parameters": {}}]
        },
    )
    assert batch.status_code == 400
    assert batch.json()["message"] == "requests[1].parameters: 'customer_id' is a required property"
    assert api.get("/api/runs", params={"jobId": job["id"]}).json().get("runs", []) == []


def test_a_bad_schema_or_template_is_refused_when_the_job_is_written(api: httpx.Client) -> None:
    schema = api.post(
        "/api/jobs", json={"name": unique("bad"), "executor": {"noop": {}}, "parameterSchema": {"type": 5}}
    )
    assert schema.status_code == 400 and schema.json()["message"].startswith("job.parameter_schema.type: ")
    remote = api.post(
        "/api/jobs",
        json={
            "name": unique("bad"),
            "executor": {"noop": {}},
            "parameterSchema": {"$ref": "https://example.com/s.json"},
        },
    )
    assert remote.status_code == 400 and "only references inside the schema" in remote.json()["message"]
    template = api.post(
        "/api/jobs",
        json={"name": unique("bad"), "executor": {"http": {"url": "https://example.com/{{ params.x }"}}},
    )
    assert template.status_code == 400
    assert template.json()["message"] == "job.executor.http.url: unexpected '}'"


def test_the_same_idempotency_key_with_other_parameters_is_refused(api: httpx.Client) -> None:
    job = create_job(api, "keyed", {"noop": {}})
    first = _trigger(api, job["id"], {"n": 1}, idempotencyKey="k-1")
    again = _trigger(api, job["id"], {"n": 1}, idempotencyKey="k-1")
    assert first.status_code == again.status_code == 200 and first.json()["id"] == again.json()["id"]
    other = _trigger(api, job["id"], {"n": 2}, idempotencyKey="k-1")
    assert other.status_code == 409
    assert other.json()["message"].startswith("idempotency_key: 'k-1' was first used with other parameters")


def test_a_render_error_fails_the_run_for_good_naming_the_field(api: httpx.Client, customers: str) -> None:
    job = create_job(
        api,
        "render-error",
        {"http": {"url": customers + "/c/{{ params.missing }}"}},
        retryPolicy={"maxAttempts": 3},
    )
    run = wait_run_terminal(api, _trigger(api, job["id"]).json()["id"])
    assert run["state"] == "FAILED" and run["attempt"] == 1
    assert run["error"]["kind"] == "TEMPLATE" and run["error"]["retryable"] is False
    assert run["error"]["message"] == "executor.http.url: 'dict object' has no attribute 'missing'"


def _shell_output_program() -> list[str]:
    code = (
        "import json, os, sys\n"
        "json.dump({'greeting': 'hello ' + sys.argv[1], 'attempt': int(os.environ['TASKMESH_ATTEMPT'])},"
        " open(os.environ['TASKMESH_OUTPUT'], 'w'))\n"
    )
    return [sys.executable, "-c", code, "{{ params.who }}"]


def test_a_shell_job_writes_its_output_shown_by_get_run_watch_and_the_cli(
    api: httpx.Client, admin_client: TaskmeshClient, taskmesh: Taskmesh
) -> None:
    job = create_job(api, "shell-output", {"shell": {"argv": _shell_output_program()}})
    run = admin_client.trigger_job(job["id"], parameters={"who": "world; rm -rf /"})
    assert dict(run.parameters) == {"who": "world; rm -rf /"}
    events = list(admin_client.watch_run(run.id))
    last = [e.run for e in events if e.WhichOneof("event") == "run"][-1]
    assert last.state == run_pb2.Run.SUCCEEDED
    assert last.output.struct_value["greeting"] == "hello world; rm -rf /"
    fetched = wait_run_terminal(api, run.id)
    assert fetched["output"] == {"greeting": "hello world; rm -rf /", "attempt": 1}
    assert fetched["attempts"][0]["renderedRequest"]["shell"]["argv"][-1] == "world; rm -rf /"
    shown = taskmesh("runs", "get", run.id)
    assert shown.returncode == 0, shown.stderr
    assert "output:" in shown.stdout and '"greeting": "hello world; rm -rf /"' in shown.stdout


def test_the_cli_triggers_with_params_and_a_params_file(
    api: httpx.Client, taskmesh: Taskmesh, tmp_path: Any
) -> None:
    job = create_job(api, "cli-params", {"noop": {}}, parameterSchema=SCHEMA)
    params_file = tmp_path / "p.json"
    params_file.write_text(json.dumps({"customer_id": 1, "region": "us"}))
    done = taskmesh(
        "jobs", "trigger", job["name"], "--params-file", str(params_file), "--param", "customer_id=7", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parameters"] == {"customer_id": 7, "region": "us"}
    refused = taskmesh("jobs", "trigger", job["name"], "--param", "customer_id=x")
    assert refused.returncode != 0
    assert "parameters.customer_id: 'x' is not of type 'integer'" in refused.stderr
