"""The telemetry interceptor on a real in-process gRPC server: RPC metrics by method and code,
the x-request-id in every log line written while serving, one log line per failed RPC."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import REGISTRY

from taskmesh.auth.credentials import CredentialDirectory, StaticCredentials
from taskmesh.auth.tokens import Principal, TokenCodec
from taskmesh.process_logging import JsonFormatter, TextFormatter, request_id
from taskmesh.records import Credential
from taskmesh.rpc.server import build_server
from taskmesh.service_errors import NotFound
from taskmesh.states import Role
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.support import free_port

SECRET = "unit-test-secret-unit-test-secret-0123"
log = logging.getLogger("tests.telemetry")


class LoggingJobs(job_service_pb2_grpc.JobServiceServicer):
    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_pb2.Job:
        log.info("looking up %s", request.id, extra={"job_id": request.id})
        if request.id == "missing":
            raise NotFound("job missing not found")
        return job_pb2.Job(id=request.id)


@pytest.fixture
async def stub() -> AsyncIterator[job_service_pb2_grpc.JobServiceStub]:
    address = f"127.0.0.1:{free_port()}"
    service = "taskmesh.v1.JobService"
    built = build_server(
        address,
        TokenCodec(SECRET, 60),
        [(service, lambda s: job_service_pb2_grpc.add_JobServiceServicer_to_server(LoggingJobs(), s))],
        CredentialDirectory(StaticCredentials([Credential("t", Role.ADMIN, 0)])),
    )
    await built.server.start()
    async with aio.insecure_channel(address) as channel:
        yield job_service_pb2_grpc.JobServiceStub(channel)
    await built.server.stop(None)


def _metadata(request: str | None = None, token: bool = True) -> tuple[tuple[str, str], ...]:
    pairs = []
    if token:
        pairs.append(("authorization", f"Bearer {TokenCodec(SECRET, 60).issue(Principal('t', Role.ADMIN)).token}"))
    if request:
        pairs.append(("x-request-id", request))
    return tuple(pairs)


def _handled(method: str, code: str) -> float:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "taskmesh.v1.JobService",
        "grpc_method": method,
        "grpc_code": code,
    }
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def _latencies(method: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": "taskmesh.v1.JobService", "grpc_method": method}
    return REGISTRY.get_sample_value("grpc_server_handling_seconds_count", labels) or 0.0


async def test_rpcs_are_counted_by_method_and_code_with_their_latency(
    stub: job_service_pb2_grpc.JobServiceStub,
) -> None:
    ok, missing, denied = (
        _handled("GetJob", "OK"),
        _handled("GetJob", "NOT_FOUND"),
        _handled("GetJob", "UNAUTHENTICATED"),
    )
    timed = _latencies("GetJob")
    await stub.GetJob(job_service_pb2.GetJobRequest(id="j1"), metadata=_metadata())
    for metadata in (_metadata(), _metadata(token=False)):
        with pytest.raises(aio.AioRpcError):
            await stub.GetJob(job_service_pb2.GetJobRequest(id="missing"), metadata=metadata)
    # The server counts a call once its handler has finished, which may be just after the
    # client has read the status.
    await _settled(
        lambda: (
            _handled("GetJob", "OK"),
            _handled("GetJob", "NOT_FOUND"),
            _handled("GetJob", "UNAUTHENTICATED"),
            _latencies("GetJob"),
        ),
        (ok + 1, missing + 1, denied + 1, timed + 3),
    )


async def _settled(read: Callable[[], tuple[float, ...]], expected: tuple[float, ...]) -> None:
    deadline = time.monotonic() + 5
    for _ in range(500):
        if read() == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert read() == expected


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the process would write: lines formatted when logged (inside the RPC's context)."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter("api_server"))
    loggers = [logging.getLogger(name) for name in ("tests.telemetry", "taskmesh.rpc.telemetry")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield output
    for logger in loggers:
        logger.removeHandler(handler)


async def _log_entries(json_lines: io.StringIO, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The JSON log entries once there are `count` (the failure line is written after the status
    went out, so the client can see the error first), or what there is at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [json.loads(line) for line in json_lines.getvalue().splitlines()]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.01)


async def test_log_lines_carry_the_request_id_and_each_failure_is_logged_once(
    stub: job_service_pb2_grpc.JobServiceStub, json_lines: io.StringIO
) -> None:
    await stub.GetJob(job_service_pb2.GetJobRequest(id="j1"), metadata=_metadata("req-ok"))
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetJob(job_service_pb2.GetJobRequest(id="missing"), metadata=_metadata("req-bad"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    entries = await _log_entries(json_lines, 3)
    assert [(e["message"], e.get("request_id")) for e in entries] == [
        ("looking up j1", "req-ok"),
        ("looking up missing", "req-bad"),
        ("rpc /taskmesh.v1.JobService/GetJob failed: NOT_FOUND", "req-bad"),
    ]
    failure = entries[-1]
    assert failure["method"] == "/taskmesh.v1.JobService/GetJob" and failure["code"] == "NOT_FOUND"
    assert failure["level"] == "INFO"  # the caller's mistake, not the server's
    assert request_id.get() is None  # nothing leaks into the test's own context


def test_text_logs_show_the_context_after_the_message() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "attempt %d claimed", (2,), None)
    record.run_id, record.attempt = "r-1", 2
    token = request_id.set("req-7")
    try:
        line = TextFormatter("scheduler").format(record)
    finally:
        request_id.reset(token)
    assert line.endswith("scheduler INFO attempt 2 claimed [run_id=r-1 attempt=2 request_id=req-7]")
