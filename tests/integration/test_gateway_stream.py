"""A server stream through the real Envoy transcoder has the shape the OpenAPI document gives it:
newline-delimited JSON, one message per line, each valid against the documented schema.

A stand-in JobService streams two known RunEvents behind the gateway, so that the test checks
the transcoder's framing alone (tests/faults/test_watch_and_logs.py follows real runs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc
from openapi_schema_validator import OAS30Validator

from gateway.config import GatewayConfig, Upstream, envoy_config
from gateway.main import envoy_command
from gateway.openapi import DESCRIPTOR_SET, NDJSON, build_document
from gateway.protoindex import ProtoIndex
from taskmesh.v1 import job_service_pb2, job_service_pb2_grpc, run_pb2
from tests.support import free_port


class StreamingJobs(job_service_pb2_grpc.JobServiceServicer):
    async def WatchRun(
        self, request: job_service_pb2.WatchRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[job_service_pb2.RunEvent]:
        yield job_service_pb2.RunEvent(run=run_pb2.Run(id=request.id, state=run_pb2.Run.QUEUED))
        yield job_service_pb2.RunEvent(run=run_pb2.Run(id=request.id, state=run_pb2.Run.RUNNING, attempt=1))


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[str]:
    server = aio.server()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(StreamingJobs(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    upstream = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    port = free_port()
    config = GatewayConfig(
        "127.0.0.1", port, free_port(), Upstream("api_server", upstream), Upstream("scheduler", upstream)
    )
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_config(config)))
    envoy = await asyncio.create_subprocess_exec(
        *envoy_command(path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        envoy.terminate()
        await asyncio.wait_for(envoy.wait(), 15)
        await server.stop(0)


async def _watch(gateway: str) -> httpx.Response | None:
    """The stream once Envoy listens and sees the upstream healthy, else None."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{gateway}/api/runs/run-1/watch")
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None


async def test_watch_streams_newline_delimited_json_matching_the_document(gateway: str) -> None:
    response = None
    for _ in range(300):  # Envoy starts, then health-checks the upstream (interval 2 s)
        response = await _watch(gateway)
        if response is not None:
            break
        await asyncio.sleep(0.1)
    assert response is not None, "the gateway never streamed WatchRun"
    document = build_document(ProtoIndex.load(DESCRIPTOR_SET))
    operation = document["paths"]["/api/runs/{id}/watch"]["get"]
    schema = {
        **operation["responses"]["200"]["content"][NDJSON]["schema"],
        "components": document["components"],
    }
    lines = response.text.splitlines()
    events = [json.loads(line) for line in lines]
    assert [event["run"]["state"] for event in events] == ["QUEUED", "RUNNING"]
    assert events[1]["run"]["attempt"] == 1
    for event in events:
        OAS30Validator(schema).validate(event)
    # The label Envoy puts on it; the document says so in the response description.
    assert response.headers["content-type"] == "application/json"
    assert "application/json" in operation["responses"]["200"]["description"]
