"""A trigger's parameters cannot aim a templated http job at the mesh: the rendered URL goes
through the same egress policy as any URL (every connection, redirects included), and a job
whose headers may hold secrets cannot let parameters choose where they go."""

from __future__ import annotations

from typing import Any

import httpx

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, unique, wait_run_terminal
from tests.security.egress_support import log_lines

RETRIES = {"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s"}}


def _run(api: httpx.Client, url: str, parameters: dict[str, Any]) -> dict[str, Any]:
    job = create_job(api, "templated-egress", {"http": {"method": "POST", "url": url}}, **RETRIES)
    response = api.post(f"/api/jobs/{job['id']}/trigger", json={"parameters": parameters})
    assert response.status_code == 200, response.text
    return wait_run_terminal(api, response.json()["id"], timeout=90)


def test_a_parameter_cannot_aim_the_url_at_the_gateway_admin_port(mesh: Mesh, api: httpx.Client) -> None:
    admin = mesh.settings.gateway_admin_port
    run = _run(api, "http://{{ params.host }}/quitquitquit", {"host": f"127.0.0.1:{admin}"})
    denial = f"egress denied: 127.0.0.1:{admin} is the mesh's gateway admin port"
    assert run["state"] == "FAILED" and run["attempt"] == 1, run
    assert run["error"]["message"] == denial and run["error"]["retryable"] is False
    assert run["attempts"][0]["renderedRequest"]["http"]["url"] == f"http://127.0.0.1:{admin}/quitquitquit"
    assert denial in log_lines(api, run["id"])
    assert httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=10).status_code == 200


def test_a_parameter_cannot_reach_a_metadata_address_through_the_path(api: httpx.Client) -> None:
    run = _run(api, "http://{{ params.host }}/latest/meta-data", {"host": "169.254.169.254"})
    assert run["state"] == "FAILED" and run["error"]["retryable"] is False
    assert "link-local" in run["error"]["message"]


def test_a_job_with_headers_cannot_let_parameters_pick_the_host(api: httpx.Client) -> None:
    response = api.post(
        "/api/jobs",
        json={
            "name": unique("secret-host"),
            "executor": {
                "http": {"url": "https://{{ params.host }}/", "headers": {"Authorization": "Bearer s3cret"}}
            },
        },
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("job.executor.http.url: a job with headers must not template")
