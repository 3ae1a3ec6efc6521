"""Finding 1 and 15 with production rules: loopback targets denied (TASKMESH_EGRESS_ALLOW_LOOPBACK
off), one loopback port opened by TASKMESH_EGRESS_ALLOW (which cannot open a mesh port), and the
aggregated metrics closed to anonymous callers. The environment stays development so that the
development secrets are accepted; the switches are what production defaults to."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.security.conftest import login
from tests.security.egress_support import Target, assert_denied, redirect_url, run_http, target_server
from tests.support import Isolation

METRICS_TOKEN = "metrics-token-for-the-security-tests-0123456789"


@pytest.fixture(scope="module")
def allowed() -> Iterator[Target]:
    with target_server() as server:
        yield server


@pytest.fixture(scope="module")
def denied() -> Iterator[Target]:
    with target_server() as server:
        yield server


@pytest.fixture(scope="module")
def mesh_settings(isolation: Isolation, allowed: Target) -> dict[str, str]:
    return {
        "TASKMESH_EGRESS_ALLOW_LOOPBACK": "false",
        "TASKMESH_EGRESS_ALLOW_PRIVATE": "false",
        # An allow entry for the admin port too: control planes stay closed all the same.
        "TASKMESH_EGRESS_ALLOW": f"127.0.0.1:{allowed.port},127.0.0.1:{isolation.admin_port}",
        "TASKMESH_ACTUATOR_PROMETHEUS_PUBLIC": "false",
        "TASKMESH_METRICS_TOKEN": METRICS_TOKEN,
    }


def test_loopback_targets_are_denied(api: httpx.Client, denied: Target) -> None:
    run = run_http(api, {"url": f"{denied.base}/nothing-here"})
    assert_denied(
        run,
        f"egress denied: 127.0.0.1:{denied.port} is a loopback address (TASKMESH_EGRESS_ALLOW_LOOPBACK is off)",
    )
    assert denied.requests == []


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1"])
def test_other_spellings_of_loopback_are_denied_on_the_address_they_resolve_to(
    api: httpx.Client, denied: Target, host: str
) -> None:
    # Names and odd IPv4 notations are resolved by the worker, then judged as the address.
    run = run_http(api, {"url": f"http://{host}:{denied.port}/by-name"})
    assert run["state"] == "FAILED" and run["error"]["retryable"] is False
    assert "is a loopback address (TASKMESH_EGRESS_ALLOW_LOOPBACK is off)" in run["error"]["message"]
    assert denied.requests == []


def test_the_allow_list_opens_one_loopback_port(api: httpx.Client, allowed: Target) -> None:
    run = run_http(api, {"url": f"{allowed.base}/allowed"})
    assert run["state"] == "SUCCEEDED", run
    assert run["result"]["http"]["bodyExcerpt"] == "hello from /allowed"


def test_the_allow_list_cannot_open_the_admin_port(mesh: Mesh, gateway: str, api: httpx.Client) -> None:
    admin = mesh.settings.gateway_admin_port
    run = run_http(api, {"method": "POST", "url": f"http://127.0.0.1:{admin}/quitquitquit"})
    assert_denied(run, f"egress denied: 127.0.0.1:{admin} is the mesh's gateway admin port")
    assert mesh.processes["gateway"].alive()
    assert httpx.get(f"{gateway}/actuator/health/liveness", timeout=10).status_code == 200


def test_a_redirect_from_an_allowed_target_to_a_denied_one_is_refused_at_the_hop(
    api: httpx.Client, allowed: Target, denied: Target
) -> None:
    run = run_http(api, {"url": redirect_url(allowed, f"{denied.base}/after-redirect")})
    assert_denied(
        run,
        f"egress denied: 127.0.0.1:{denied.port} is a loopback address (TASKMESH_EGRESS_ALLOW_LOOPBACK is off)",
    )
    assert "/redirect" in allowed.paths()
    assert denied.requests == []


def test_anonymous_callers_cannot_read_the_aggregated_metrics(gateway: str) -> None:
    response = httpx.get(f"{gateway}/actuator/prometheus", timeout=30)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "taskmesh_" not in response.text
    bad = httpx.get(f"{gateway}/actuator/prometheus", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert bad.status_code == 401


def test_a_viewer_may_not_but_an_admin_and_the_metrics_token_may(gateway: str, api: httpx.Client) -> None:
    created = api.post(
        "/api/users", json={"username": "metrics-viewer", "password": "viewer-pass-1", "role": "VIEWER"}
    )
    assert created.status_code == 200, created.text
    viewer = login(gateway, "metrics-viewer", "viewer-pass-1")
    url = f"{gateway}/actuator/prometheus"
    assert httpx.get(url, headers={"Authorization": f"Bearer {viewer}"}, timeout=30).status_code == 403
    as_admin = api.get("/actuator/prometheus")
    assert as_admin.status_code == 200 and "taskmesh_aggregate_up" in as_admin.text
    scraper = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert scraper.status_code == 200 and "taskmesh_aggregate_up" in scraper.text


def test_health_stays_open_for_probes(gateway: str) -> None:
    for path in ("/actuator/health", "/actuator/health/liveness", "/actuator/health/readiness"):
        assert httpx.get(f"{gateway}{path}", timeout=30).status_code in (200, 503), path
    assert httpx.get(f"{gateway}/actuator/health/liveness", timeout=30).status_code == 200
