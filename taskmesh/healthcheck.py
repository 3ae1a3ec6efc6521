"""taskmesh-healthcheck: exit 0 when a process says it is healthy, 1 (with one line why) otherwise.

Container health checks (Docker Compose) call this instead of a grpc_health_probe binary:

  taskmesh-healthcheck 127.0.0.1:50051                        gRPC health service, overall status
  taskmesh-healthcheck 127.0.0.1:50051 --service NAME         one service's status
  taskmesh-healthcheck http://127.0.0.1:8080/actuator/health  an HTTP endpoint answering 2xx

With TASKMESH_TLS_ENABLED, gRPC targets are checked over TLS (taskmesh/tls.py: the server's
certificate must name the target's host, e.g. 127.0.0.1 or localhost); an https:// URL is
verified against TASKMESH_TLS_CA_FILE when it is set, else the system's roots.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskmesh.settings import Settings
from taskmesh.tls import ClientTls, TlsSettingsError, channel, client_tls


def check_grpc(address: str, service: str = "", timeout: float = 3.0, tls: ClientTls | None = None) -> str | None:
    """Ask the standard gRPC health service; return why it is unhealthy, or None when SERVING."""
    with channel(address, tls) as opened:
        stub = health_pb2_grpc.HealthStub(opened)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            return f"{address}: {error.code().name} {error.details() or ''}".rstrip()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def check_http(url: str, timeout: float = 3.0, ca_file: str = "") -> str | None:
    """GET the URL; return why it is unhealthy, or None on a 2xx answer."""
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        response = httpx.get(url, timeout=timeout, verify=verify)
    except httpx.HTTPError as error:
        return f"{url}: {type(error).__name__} {error}".rstrip()
    if not response.is_success:
        return f"{url}: HTTP {response.status_code}"
    return None


def check(target: str, service: str = "", timeout: float = 3.0, settings: Settings | None = None) -> str | None:
    """settings: the TLS block (TASKMESH_TLS_*); the environment's when None."""
    settings = settings or Settings()
    if target.startswith(("http://", "https://")):
        try:
            return check_http(target, timeout, settings.tls_ca_file)
        except (OSError, ssl.SSLError) as error:  # the CA file cannot be used
            return f"TASKMESH_TLS_CA_FILE: {type(error).__name__} {error}"
    try:
        tls = client_tls(settings)
    except TlsSettingsError as error:
        return str(error)
    return check_grpc(target, service, timeout, tls)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taskmesh-healthcheck", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="host:port of a gRPC server, or an http(s):// URL")
    parser.add_argument("--service", default="", help="gRPC health service name (default: the overall status)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    problem = check(args.target, args.service, args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
