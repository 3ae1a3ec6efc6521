"""Schemathesis against the live gateway, authenticated: no 5xx, and answers that match the
document (status codes, content types, response schemas and headers).

It runs on a mesh of its own with no workers: generated jobs (shell commands, HTTP calls to
made-up URLs) may be created and triggered, but nothing ever executes them. Server streams
(WatchRun) are left out: a watch of a run that never finishes stays open by design;
tests/integration/test_gateway_stream.py checks their format.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.openapi import NDJSON
from taskmesh.launcher import Mesh
from tests.support import Isolation

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = [
    "not_a_server_error",  # any 5xx, 501 UNIMPLEMENTED included: every RPC is implemented
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]
MAX_EXAMPLES = 25  # per operation and phase: bounded, a few seconds in all
SEED = 20251126


@pytest.fixture(scope="module")
def idle_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway over api_server and scheduler, with no worker to run what the fuzzer triggers."""
    isolation = Isolation.create("f")
    # Nothing the fuzzer writes may leave the machine: notification channels it creates and
    # tests would be posted to by the scheduler (there is no worker for its http jobs).
    no_egress = {"TASKMESH_EGRESS_DENY": "0.0.0.0/0,::/0"}
    mesh = Mesh({**os.environ, **isolation.env(), **no_egress}, log_dir=tmp_path_factory.mktemp("fuzz-mesh-logs"))
    try:
        mesh.start_all(workers=0)
        yield f"http://127.0.0.1:{isolation.gateway_port}"
    finally:
        mesh.stop_all()
        isolation.drop()


def test_schemathesis_finds_no_server_error_and_no_mismatch(idle_gateway: str, tmp_path: Path) -> None:
    login = httpx.post(f"{idle_gateway}/api/auth/login", json={"username": "admin", "password": "admin"})
    token = login.json()["accessToken"]
    document = httpx.get(f"{idle_gateway}/openapi.json").json()
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    streams = [op["operationId"] for op in operations if NDJSON in op["responses"]["200"]["content"]]
    assert streams, "expected WatchRun to be documented as a stream"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{idle_gateway}/openapi.json",
        f"--url={idle_gateway}",
        f"--header=Authorization: Bearer {token}",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",
        "--request-timeout=30",
        "--generation-database=none",
        "--no-color",
        *(f"--exclude-operation-id={operation_id}" for operation_id in streams),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-15000:]
    assert f"Tested: {len(operations) - len(streams)}" in output, output[-3000:]
