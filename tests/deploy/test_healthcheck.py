"""taskmesh-healthcheck against a real gRPC health service and a real HTTP server on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from taskmesh.healthcheck import main
from tests.support import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def grpc_health() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/up" else 503)
        self.end_headers()
        self.wfile.write(b'{"status":"UP"}' if self.path == "/up" else b'{"status":"DOWN"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_serving_grpc_server_is_healthy(grpc_health: tuple[str, health.HealthServicer]) -> None:
    address, servicer = grpc_health
    servicer.set("", SERVING)
    assert main([address]) == 0


def test_not_serving_grpc_server_is_unhealthy(
    grpc_health: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = grpc_health
    servicer.set("", NOT_SERVING)
    assert main([address]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err


def test_named_service_is_checked(
    grpc_health: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = grpc_health
    servicer.set("", SERVING)
    servicer.set("taskmesh.v1.JobService", NOT_SERVING)
    assert main([address, "--service", "taskmesh.v1.JobService"]) == 1
    assert main([address, "--service", "unknown.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"127.0.0.1:{free_port()}", "--timeout", "1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_http_endpoint_answering_2xx_is_healthy(http_base: str) -> None:
    assert main([f"{http_base}/up"]) == 0


def test_http_endpoint_answering_503_is_unhealthy(http_base: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"{http_base}/actuator/health/readiness"]) == 1
    assert "HTTP 503" in capsys.readouterr().err


def test_http_endpoint_not_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"http://127.0.0.1:{free_port()}/up", "--timeout", "1"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_console_script_exits_with_the_verdict(grpc_health: tuple[str, health.HealthServicer]) -> None:
    """What the compose health checks run: the installed console script, by its exit code."""
    address, servicer = grpc_health
    script = str(Path(sys.executable).parent / "taskmesh-healthcheck")
    servicer.set("", SERVING)
    assert subprocess.run([script, address], capture_output=True, timeout=60).returncode == 0
    servicer.set("", NOT_SERVING)
    failed = subprocess.run([script, address], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"unhealthy: {address}: NOT_SERVING"
