"""Finding 1 and 6: no http job reaches the mesh's own control planes, directly, by name or
through a redirect; redirects to another origin carry no job headers; timeouts are total.

A development mesh: loopback targets are allowed (this module's own test server), the mesh's
ports are not."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.security.egress_support import (
    Target,
    assert_denied,
    log_lines,
    redirect_url,
    run_http,
    target_server,
)

RETRIES = {"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s"}}


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with target_server() as server:
        yield server


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _mesh_ports(mesh: Mesh) -> dict[str, int]:
    settings = mesh.settings
    worker = mesh.worker_listens["worker-1"]
    return {
        "gateway admin port": settings.gateway_admin_port,
        "gateway port": settings.gateway_port,
        "api_server gRPC port": _port(settings.api_listen),
        "scheduler gRPC port": _port(settings.scheduler_listen),
        "api_server metrics port": _port(settings.api_metrics_listen),
        "scheduler metrics port": _port(settings.scheduler_metrics_listen),
        "worker metrics port": _port(worker.metrics),
        "worker health port": _port(worker.health),
    }


def _gateway_alive(mesh: Mesh, gateway: str) -> None:
    assert mesh.processes["gateway"].alive()
    assert httpx.get(f"{gateway}/actuator/health/liveness", timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{mesh.settings.gateway_admin_port}/ready", timeout=10).status_code == 200


def test_quitquitquit_through_an_http_job_is_denied_and_the_gateway_keeps_serving(
    mesh: Mesh, gateway: str, api: httpx.Client
) -> None:
    admin = mesh.settings.gateway_admin_port
    run = run_http(api, {"method": "POST", "url": f"http://127.0.0.1:{admin}/quitquitquit"}, **RETRIES)
    assert_denied(run, f"egress denied: 127.0.0.1:{admin} is the mesh's gateway admin port")
    assert f"egress denied: 127.0.0.1:{admin} is the mesh's gateway admin port" in log_lines(api, run["id"])
    _gateway_alive(mesh, gateway)


@pytest.mark.parametrize(
    "name",
    [
        "gateway port",
        "api_server gRPC port",
        "scheduler gRPC port",
        "api_server metrics port",
        "scheduler metrics port",
        "worker metrics port",
        "worker health port",
    ],
)
def test_every_mesh_port_is_denied_with_its_rule_named(mesh: Mesh, api: httpx.Client, name: str) -> None:
    port = _mesh_ports(mesh)[name]
    run = run_http(api, {"url": f"http://127.0.0.1:{port}/metrics"}, **RETRIES)
    assert_denied(run, f"egress denied: 127.0.0.1:{port} is the mesh's {name}")


@pytest.mark.parametrize(
    ("host", "shown"),
    [("localhost", None), ("127.0.0.2", "127.0.0.2"), ("[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]")],
)
def test_other_spellings_of_this_machine_are_judged_by_the_address_connected_to(
    mesh: Mesh, gateway: str, api: httpx.Client, host: str, shown: str | None
) -> None:
    # A name is resolved by the worker's transport and checked on each address it connects to.
    admin = mesh.settings.gateway_admin_port
    run = run_http(api, {"method": "POST", "url": f"http://{host}:{admin}/quitquitquit"})
    assert run["state"] == "FAILED" and run["error"]["retryable"] is False
    assert run["error"]["message"].endswith(f":{admin} is the mesh's gateway admin port")
    if shown:
        assert run["error"]["message"] == f"egress denied: {shown}:{admin} is the mesh's gateway admin port"
    _gateway_alive(mesh, gateway)


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_the_admin_port_is_refused_at_the_hop(
    mesh: Mesh, gateway: str, api: httpx.Client, target: Target, status: int
) -> None:
    admin = mesh.settings.gateway_admin_port
    url = redirect_url(target, f"http://127.0.0.1:{admin}/quitquitquit", status)
    run = run_http(api, {"method": "POST", "url": url, "body": "x"}, **RETRIES)
    assert_denied(run, f"egress denied: 127.0.0.1:{admin} is the mesh's gateway admin port")
    assert any(
        f"HTTP {status} redirect to http://127.0.0.1:{admin}/quitquitquit" in line
        for line in log_lines(api, run["id"])
    )
    _gateway_alive(mesh, gateway)


def test_a_redirect_to_a_metrics_port_never_reads_its_body(mesh: Mesh, api: httpx.Client, target: Target) -> None:
    metrics = _port(mesh.settings.api_metrics_listen)
    run = run_http(api, {"url": redirect_url(target, f"http://127.0.0.1:{metrics}/metrics")})
    assert_denied(run, f"egress denied: 127.0.0.1:{metrics} is the mesh's api_server metrics port")
    assert "taskmesh_" not in str(run)


def test_a_redirect_to_another_origin_does_not_carry_the_jobs_headers(api: httpx.Client, target: Target) -> None:
    landing = f"http://localhost:{target.port}/landed-elsewhere"  # same server, another origin
    headers = {"X-Api-Key": "secret-key-1", "Authorization": "Bearer job-secret"}
    run = run_http(api, {"url": redirect_url(target, landing), "headers": headers})
    assert run["state"] == "SUCCEEDED", run
    assert run["result"]["http"]["bodyExcerpt"] == "hello from /landed-elsewhere"
    first = next(h for _, path, h in target.requests if path.startswith("/redirect") and "x-api-key" in h)
    assert first["x-api-key"] == "secret-key-1"
    (landed,) = [h for _, path, h in target.requests if path == "/landed-elsewhere"]
    assert "x-api-key" not in landed and "authorization" not in landed
    assert landed["x-taskmesh-run-id"] == run["id"]


def test_a_redirect_within_the_origin_keeps_the_jobs_headers(api: httpx.Client, target: Target) -> None:
    run = run_http(api, {"url": redirect_url(target, "/landed-here"), "headers": {"X-Api-Key": "k-2"}})
    assert run["state"] == "SUCCEEDED", run
    (landed,) = [h for _, path, h in target.requests if path == "/landed-here"]
    assert landed["x-api-key"] == "k-2"


def test_the_timeout_bounds_the_whole_request_body_included(api: httpx.Client, target: Target) -> None:
    # The server sends a byte every 1.5 s: no single read ever waits 2 s, the whole does.
    run = run_http(api, {"url": f"{target.base}/drip", "timeout": "2s"})
    assert run["state"] == "FAILED", run
    assert run["error"]["kind"] == "TIMEOUT"
    assert run["error"]["message"] == "request timed out after 2s"
    assert "/drip" in target.paths()


def test_the_admin_port_serves_nothing_that_changes_or_reveals_the_gateway(mesh: Mesh, gateway: str) -> None:
    admin = f"http://127.0.0.1:{mesh.settings.gateway_admin_port}"
    for method, path in [
        ("POST", "/quitquitquit"),
        ("POST", "/healthcheck/fail"),
        ("POST", "/logging?level=trace"),
        ("POST", "/runtime_modify?x=1"),
        ("POST", "/drain_listeners"),
        ("GET", "/config_dump"),
        ("GET", "/clusters"),
        ("GET", "/ready/../config_dump"),
        ("POST", "/ready"),
    ]:
        assert httpx.request(method, f"{admin}{path}", timeout=10).status_code == 404, (method, path)
    assert httpx.get(f"{admin}/stats/prometheus", timeout=10).status_code == 200
    _gateway_alive(mesh, gateway)


def test_development_metrics_stay_readable_without_a_token(gateway: str) -> None:
    response = httpx.get(f"{gateway}/actuator/prometheus", timeout=30)
    assert response.status_code == 200 and "taskmesh_aggregate_up" in response.text
