"""A real Envoy, configured by gateway/config.py, in front of a stand-in api_server whose gRPC
health the test flips: while it says NOT_SERVING the gateway sends it nothing (no panic
routing), and traffic resumes once it says SERVING again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.config import GatewayConfig, Upstream, envoy_config
from gateway.main import envoy_command
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.support import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class CountingJobs(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_pb2.Job:
        self.calls += 1
        return job_pb2.Job(id=request.id, name="stand-in")


@dataclass
class Gateway:
    url: str
    admin_socket: Path  # Envoy's full admin interface
    jobs: CountingJobs
    health: health.aio.HealthServicer
    upstream: str


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    jobs, health_servicer = CountingJobs(), health.aio.HealthServicer()
    server = aio.server()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(jobs, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    upstream = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    port, admin = free_port(), free_port()
    config = GatewayConfig(
        "127.0.0.1", port, admin, Upstream("api_server", upstream), Upstream("scheduler", upstream)
    )
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_config(config)))
    envoy = await asyncio.create_subprocess_exec(
        *envoy_command(path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield Gateway(f"http://127.0.0.1:{port}", config.admin_socket_path, jobs, health_servicer, upstream)
    finally:
        envoy.terminate()
        await asyncio.wait_for(envoy.wait(), 15)
        await server.stop(0)


async def _until(condition: Any, message: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, f"timed out waiting for {message}"
        await asyncio.sleep(0.1)


async def _host_health(gateway: Gateway) -> str | None:
    """Envoy's view of the upstream: '/failed_active_hc' when it failed its checks, 'healthy'."""
    try:
        transport = httpx.AsyncHTTPTransport(uds=str(gateway.admin_socket))
        async with httpx.AsyncClient(transport=transport, timeout=10) as admin:
            text = (await admin.get("http://envoy-admin/clusters")).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith(f"api_server::{gateway.upstream}::health_flags::"):
            return line.rsplit("::", 1)[1]
    return None


async def test_a_not_serving_upstream_gets_no_traffic_until_it_serves_again(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=10) as client:

        async def healthy() -> bool:
            return await _host_health(gateway) == "healthy"

        async def failed() -> bool:
            return "failed_active_hc" in (await _host_health(gateway) or "")

        await _until(healthy, "Envoy to see the upstream healthy")
        served = await client.get(f"{gateway.url}/api/jobs/j-1")
        assert served.status_code == 200 and served.json()["name"] == "stand-in"
        assert gateway.jobs.calls == 1

        await gateway.health.set("", NOT_SERVING)
        await _until(failed, "Envoy to mark the upstream failed")
        refused = [await client.get(f"{gateway.url}/api/jobs/j-{n}") for n in range(5)]
        assert [r.status_code for r in refused] == [503] * 5
        assert all("no healthy upstream" in r.text for r in refused)
        async with aio.insecure_channel(gateway.url.removeprefix("http://")) as channel:  # native gRPC too
            with pytest.raises(aio.AioRpcError):
                await job_service_pb2_grpc.JobServiceStub(channel).GetJob(
                    job_service_pb2.GetJobRequest(id="j-grpc"), timeout=5
                )
        assert gateway.jobs.calls == 1  # nothing reached the NOT_SERVING upstream

        await gateway.health.set("", SERVING)

        async def routed() -> bool:  # a refused request never reaches the upstream
            return (await client.get(f"{gateway.url}/api/jobs/j-back")).status_code == 200

        await _until(routed, "the gateway to route to the upstream again")
        assert gateway.jobs.calls == 2
