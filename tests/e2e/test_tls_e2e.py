"""TLS everywhere (issue 14, item 7): a mesh whose gateway serves HTTPS and whose processes talk
to each other over mTLS, with a CA and certificates this test makes itself (tests/e2e/pki.py).

Checked: REST over HTTPS and native gRPC over TLS through the gateway; a worker runs a job over
its TLS link to the scheduler (and logs in to the api_server over TLS); clients without the CA,
plaintext clients, and (mTLS) clients without a certificate of the mesh's CA are refused.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskmesh.launcher import Mesh
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc, job_service_pb2, job_service_pb2_grpc
from tests.e2e.pki import Authority, Issued
from tests.support import Isolation, wait_for

pytestmark = pytest.mark.e2e

HOSTS = ["127.0.0.1", "localhost"]


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = Authority(directory, "taskmesh-test")
        self.mesh = self.ca.issue("mesh", HOSTS)  # every process's certificate (server and client)
        self.gateway = self.ca.issue("gateway", HOSTS)  # the gateway's HTTPS certificate
        self.stranger_ca = Authority(directory, "stranger")
        self.stranger = self.stranger_ca.issue("stranger", HOSTS)

    def pem(self, path: Path) -> bytes:
        return path.read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_mesh(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    isolation = Isolation.create("tls")
    tls_env = {
        "TASKMESH_TLS_ENABLED": "true",
        "TASKMESH_TLS_CLIENT_AUTH": "true",
        "TASKMESH_TLS_CA_FILE": str(pki.ca.cert),
        "TASKMESH_TLS_CERT_FILE": str(pki.mesh.cert),
        "TASKMESH_TLS_KEY_FILE": str(pki.mesh.key),
        "TASKMESH_GATEWAY_TLS_CERT_FILE": str(pki.gateway.cert),
        "TASKMESH_GATEWAY_TLS_KEY_FILE": str(pki.gateway.key),
    }
    mesh = Mesh({**os.environ, **isolation.env(), **tls_env}, log_dir=tmp_path_factory.mktemp("tls-mesh-logs"))
    try:
        mesh.start_all(workers=1)
        yield mesh
    finally:
        mesh.stop_all()
        isolation.drop()


@pytest.fixture(scope="module")
def gateway(tls_mesh: Mesh) -> str:
    return f"https://127.0.0.1:{tls_mesh.settings.gateway_port}"


@pytest.fixture(scope="module")
def trusted(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca.cert))


@pytest.fixture(scope="module")
def api(gateway: str, trusted: ssl.SSLContext) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, verify=trusted, timeout=10) as client:
        login = client.post("/api/auth/login", json={"username": "admin", "password": "admin"})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['accessToken']}"
        yield client


def _credentials(pki: Pki, roots: Path | None, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        pki.pem(roots) if roots else None,
        pki.pem(client.key) if client else None,
        pki.pem(client.cert) if client else None,
    )


def _health(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode | str:
    """SERVING, or the status code the check failed with."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_rest_over_https_through_the_gateway(api: httpx.Client) -> None:
    assert str(api.base_url).startswith("https://")
    # UP once the worker, which start_all does not wait for, has connected and consumes.
    health = wait_for(
        lambda: (r := api.get("/actuator/health")).status_code == 200 and r,
        timeout=60,
        message="the mesh's health UP over HTTPS",
    )
    assert health.json()["status"] == "UP"
    listed = api.get("/api/jobs")
    assert listed.status_code == 200, listed.text


def test_native_grpc_over_tls_through_the_gateway(tls_mesh: Mesh, pki: Pki) -> None:
    address = f"127.0.0.1:{tls_mesh.settings.gateway_port}"
    with grpc.secure_channel(address, _credentials(pki, pki.ca.cert)) as channel:
        login = auth_service_pb2_grpc.AuthServiceStub(channel).Login(
            auth_service_pb2.LoginRequest(username="admin", password="admin"), timeout=10
        )
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {login.access_token}"),)
        listed = jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=1), metadata=metadata, timeout=10)
    assert login.access_token
    assert isinstance(listed, job_service_pb2.ListJobsResponse)


def test_a_worker_runs_a_job_over_its_tls_link_to_the_scheduler(api: httpx.Client, tls_mesh: Mesh) -> None:
    created = api.post("/api/jobs", json={"name": "tls-e2e-noop", "executor": {"noop": {}}})
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    triggered = api.post(f"/api/jobs/{job_id}/trigger")
    assert triggered.status_code == 200, triggered.text

    def succeeded() -> dict[str, object] | None:
        status = api.get(f"/api/jobs/{job_id}/status")
        assert status.status_code == 200, status.text
        body: dict[str, object] = status.json()
        return body if body.get("state") == "SUCCEEDED" else None

    final = wait_for(succeeded, timeout=60, interval=0.2, message="the job SUCCEEDED on the TLS mesh")
    assert str(final["lastRun"]["workerId"]).startswith("worker-")  # type: ignore[index]
    # The worker's only way to the scheduler is the TLS address in its settings.
    assert tls_mesh.settings.tls_enabled
    assert _health(tls_mesh.settings.scheduler_address, None) == grpc.StatusCode.UNAVAILABLE


def test_a_client_without_the_ca_is_refused_by_the_gateway(tls_mesh: Mesh, gateway: str, pki: Pki) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{gateway}/actuator/health", timeout=10)  # the system's roots only
    stranger = ssl.create_default_context(cafile=str(pki.stranger_ca.cert))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{gateway}/actuator/health", verify=stranger, timeout=10)
    address = f"127.0.0.1:{tls_mesh.settings.gateway_port}"
    assert _health(address, _credentials(pki, None)) == grpc.StatusCode.UNAVAILABLE
    assert _health(address, _credentials(pki, pki.stranger_ca.cert)) == grpc.StatusCode.UNAVAILABLE
    # Plain HTTP and plaintext gRPC to the HTTPS port get nowhere either.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{address}/actuator/health", timeout=10)
    assert _health(address, None) == grpc.StatusCode.UNAVAILABLE
    # With the CA, the same checks pass: the refusals above are about trust, not a broken gateway.
    assert _health(address, _credentials(pki, pki.ca.cert)) == "SERVING"


def test_the_servers_require_a_client_certificate_of_the_mesh_ca(tls_mesh: Mesh, pki: Pki) -> None:
    for address in (tls_mesh.settings.api_address, tls_mesh.settings.scheduler_address):
        assert _health(address, None) == grpc.StatusCode.UNAVAILABLE, address
        assert _health(address, _credentials(pki, pki.ca.cert)) == grpc.StatusCode.UNAVAILABLE, address
        assert _health(address, _credentials(pki, pki.ca.cert, pki.stranger)) == grpc.StatusCode.UNAVAILABLE
        assert _health(address, _credentials(pki, pki.ca.cert, pki.mesh)) == "SERVING", address
