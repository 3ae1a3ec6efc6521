"""Build a grpc.aio server with telemetry, the guard, health and reflection; running it is the
caller's job. A worker, which serves no API, gets a server with the health service only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from taskmesh.audit import AuditRecorder
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.tokens import TokenCodec
from taskmesh.rpc.guard import GuardInterceptor
from taskmesh.rpc.telemetry import TelemetryInterceptor
from taskmesh.tls import ServerTls, add_port

AddServicer = Callable[[aio.Server], None]
# Largest message a server takes (gRPC's default is 4 MiB): well above the largest valid request
# (a job is at most 2 MiB, api_server/validation.py), so that an oversized field is answered by
# validation naming it. A larger message is refused by gRPC itself, before it is decoded, with
# RESOURCE_EXHAUSTED "Received message larger than max" (429 through the gateway).
MAX_MESSAGE_BYTES = 16 << 20


@dataclass
class BuiltServer:
    server: aio.Server
    health: health.aio.HealthServicer
    service_names: Sequence[str]

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)


def build_server(
    listen: str,
    tokens: TokenCodec,
    services: Sequence[tuple[str, AddServicer]],
    credentials: CredentialDirectory,
    tls: ServerTls | None = None,
    audit: AuditRecorder | None = None,
) -> BuiltServer:
    """services: (full service name, function adding its servicer to a server); credentials: what
    tokens and API keys are checked against (the caller keeps it refreshed); tls: serve TLS only
    (taskmesh/tls.py); audit: where the guard records refused audited calls (None: a server with
    no audited method)."""
    server = aio.server(
        # Telemetry outermost: it sees the status codes the guard maps errors to.
        interceptors=[TelemetryInterceptor(), GuardInterceptor(tokens, credentials, audit)],
        options=[
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    for _, add in services:
        add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [name for name, _ in services]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    bound = add_port(server, listen, tls)
    if bound == 0:
        raise OSError(f"cannot listen on {listen}")
    return BuiltServer(server=server, health=health_servicer, service_names=names)


def build_health_server(listen: str, tls: ServerTls | None = None) -> BuiltServer:
    """A server with only the standard health service (TLS only when tls is given)."""
    server = aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if add_port(server, listen, tls) == 0:
        raise OSError(f"cannot listen on {listen}")
    return BuiltServer(server=server, health=health_servicer, service_names=[])
