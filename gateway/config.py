"""The Envoy configuration of the gateway, built from settings.

One listener serves REST/JSON (transcoded to gRPC from the protos' google.api.http
annotations) and native gRPC (grpcurl, generated clients) on the same port, routing each gRPC
service to its upstream. Upstreams are health-checked with the gRPC health service, and a
failed upstream gets no traffic (no panic routing).

/actuator/* (health and the aggregated Prometheus metrics) is plain HTTP, proxied to the
api_server's metrics listener with the transcoder disabled. Envoy generates an x-request-id
for every request, passes it to the upstream (the servers log it) and returns it to the caller.

Envoy's admin interface (which can stop the gateway, dump its configuration, change its
runtime) listens only on a Unix socket (mode 0600). Over TCP, the admin port serves a separate
listener that passes GET/HEAD of the read-only READ_ONLY_ADMIN_PATHS to that socket and answers
404 to anything else.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import console_ui, swagger_ui
from gateway.tls import KeyPair, UpstreamTls, downstream_socket, upstream_socket

DESCRIPTOR_SET = Path(__file__).parent / "generated" / "taskmesh.pb"
TYPE = "type.googleapis.com/envoy.extensions"
TRANSCODED_SERVICES = [
    "taskmesh.v1.JobService",
    "taskmesh.v1.AuthService",
    "taskmesh.v1.NotificationService",
    "taskmesh.v1.SecretService",
]
ACTUATOR_PREFIX = "/actuator"
# What the admin port serves over TCP: probes and Prometheus scraping, nothing that changes or
# reveals the gateway's configuration.
READ_ONLY_ADMIN_PATHS = ("/ready", "/stats/prometheus")
ADMIN_CLUSTER = "envoy_admin"


@dataclass(frozen=True)
class Upstream:
    name: str
    address: str  # host:port

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class GatewayConfig:
    listen_host: str
    port: int
    admin_port: int
    api_server: Upstream
    scheduler: Upstream
    # The api_server's metrics listener, which serves /actuator/*; None: no actuator routes.
    actuator: Upstream | None = None
    descriptor_set: Path = DESCRIPTOR_SET
    # Where Envoy's full admin interface listens; the default is admin_socket_path(port).
    admin_socket: Path | None = None
    # HTTPS on the gateway's listener; TLS to the api_server and scheduler (gateway/tls.py).
    downstream_tls: KeyPair | None = None
    upstream_tls: UpstreamTls | None = None

    @property
    def admin_socket_path(self) -> Path:
        return self.admin_socket or default_admin_socket(self.port)


def default_admin_socket(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"taskmesh-gateway-{port}-admin.sock"


def _route(prefix: str, cluster: str, timeout: str = "60s") -> dict[str, Any]:
    route: dict[str, Any] = {"cluster": cluster, "timeout": timeout}
    if timeout == "0s":  # a long-lived stream may stay quiet for long: no idle timeout either
        route["idle_timeout"] = "0s"
    return {"match": {"prefix": prefix}, "route": route}


def routes() -> list[dict[str, Any]]:
    return [
        # Long-lived streams: no route timeout.
        _route("/taskmesh.v1.WorkerService/", "scheduler", "0s"),
        _route("/taskmesh.v1.JobService/WatchRun", "api_server", "0s"),
        _route("/taskmesh.v1.JobService/", "api_server"),
        _route("/taskmesh.v1.AuthService/", "api_server"),
        _route("/taskmesh.v1.NotificationService/", "api_server"),
        _route("/taskmesh.v1.SecretService/", "api_server"),
        _route("/grpc.reflection.", "api_server", "0s"),
        _route("/grpc.health.v1.Health/", "api_server"),
    ]


def actuator_routes(cluster: str) -> list[dict[str, Any]]:
    """Plain HTTP to the api_server's actuator; place them before the gRPC routes."""
    # A request that finds an api_server gone is tried on another one.
    retry = {"retry_on": "connect-failure,refused-stream,reset", "num_retries": 2}
    route = {
        "match": {"prefix": ACTUATOR_PREFIX},
        "route": {"cluster": cluster, "timeout": "10s", "retry_policy": retry},
    }
    return [swagger_ui.without_transcoder(route)]


def _endpoints(upstream: Upstream) -> dict[str, Any]:
    address = {"socket_address": {"address": upstream.host, "port_value": upstream.port}}
    return {
        "name": upstream.name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": upstream.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _actuator_cluster(upstream: Upstream) -> dict[str, Any]:
    """HTTP/1.1 and no active health check: while the database is down the api_server answers
    503 with the detail, instead of Envoy's bare "no healthy upstream". A host that refuses
    connections is ejected for a while; its 503 answers (DOWN) never eject it."""
    detection = {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 2,
        "enforcing_consecutive_5xx": 0,
    }
    return {**_endpoints(upstream), "outlier_detection": detection}


def _cluster(upstream: Upstream, tls: UpstreamTls | None = None) -> dict[str, Any]:
    secure = {"transport_socket": upstream_socket(tls, upstream.host)} if tls else {}
    return {
        **_endpoints(upstream),
        **secure,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{TYPE}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "health_checks": [
            {
                # A busy server (a login flood, a burst of triggers) may answer its health check
                # late: only three checks in a row without an answer within 5 s, or a
                # NOT_SERVING answer, take it out of routing.
                "timeout": "5s",
                "interval": "2s",
                "no_traffic_interval": "2s",
                # A failed host is looked at more often, so that it is back soon after it recovers.
                "unhealthy_interval": "0.5s",
                "unhealthy_threshold": 3,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
        # Never route to a host that failed its health check, even if all have.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }


# The transcoder buffers a whole unary answer to turn it into JSON (1 MiB by default, then
# 500). Pages stop at taskmesh.listing.PAGE_BYTES of protobuf and a job is at most 2 MiB
# (api_server/validation.py); JSON takes at most 6 bytes per protobuf byte (\u00XX escapes),
# so every answer fits. Requests are transcoded as they stream in: the servers' gRPC limit
# bounds them (taskmesh/rpc/server.py MAX_MESSAGE_BYTES).
MAX_RESPONSE_BODY_BYTES = 32 << 20


def _transcoder(descriptor_set: Path) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": {
            "@type": f"{TYPE}.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(descriptor_set),
            "services": TRANSCODED_SERVICES,
            # Server streams as newline-delimited JSON (Envoy still labels them application/json).
            "print_options": {"always_print_primitive_fields": True, "stream_newline_delimited": True},
            "convert_grpc_status": True,
            # Browsers and HTTP libraries encode spaces in query strings as '+'.
            "query_param_unescape_plus": True,
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            "max_response_body_size": MAX_RESPONSE_BODY_BYTES,
        },
    }


def _router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


def _read_only_admin_routes() -> list[dict[str, Any]]:
    methods = {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
    routes = [
        {"match": {"path": path, "headers": [methods]}, "route": {"cluster": ADMIN_CLUSTER, "timeout": "10s"}}
        for path in READ_ONLY_ADMIN_PATHS
    ]
    refused = {"status": 404, "body": {"inline_string": "not found: only GET /ready and /stats/prometheus\n"}}
    return [*routes, {"match": {"prefix": "/"}, "direct_response": refused}]


def _admin_listener(config: GatewayConfig) -> dict[str, Any]:
    connection_manager = {
        "@type": f"{TYPE}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "admin_read_only",
        "codec_type": "AUTO",
        # Match on the normalised path: no /x/../quitquitquit or //ready tricks.
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "route_config": {
            "name": "admin_read_only",
            "virtual_hosts": [{"name": "admin", "domains": ["*"], "routes": _read_only_admin_routes()}],
        },
        "http_filters": [_router()],
    }
    return {
        "name": "admin_read_only",
        "address": {"socket_address": {"address": config.listen_host, "port_value": config.admin_port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": connection_manager}
                ]
            }
        ],
    }


def _admin_cluster(config: GatewayConfig) -> dict[str, Any]:
    address = {"pipe": {"path": str(config.admin_socket_path)}}
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def envoy_config(config: GatewayConfig) -> dict[str, Any]:
    connection_manager = {
        "@type": f"{TYPE}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "generate_request_id": True,
        # Append the client's address to X-Forwarded-For: the api_server throttles failed logins
        # per client address, trusting only the entry Envoy writes (taskmesh/rpc/peers.py).
        "use_remote_address": True,
        "always_set_request_id_in_response": True,
        "route_config": {
            "name": "taskmesh",
            "virtual_hosts": [
                {
                    "name": "taskmesh",
                    "domains": ["*"],
                    # The OpenAPI document and Swagger UI, generated next to the descriptor set.
                    "routes": [
                        *swagger_ui.routes(config.descriptor_set.parent),
                        # The web console (gateway/console/), and / redirecting to it.
                        *console_ui.routes(),
                        *(actuator_routes(config.actuator.name) if config.actuator else []),
                        *routes(),
                    ],
                }
            ],
            "max_direct_response_body_size_bytes": swagger_ui.MAX_DIRECT_RESPONSE_BYTES,
        },
        "http_filters": [_transcoder(config.descriptor_set), _router()],
    }
    return {
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": f"{TYPE}.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10000,
                    },
                }
            ]
        },
        "admin": {"address": {"pipe": {"path": str(config.admin_socket_path), "mode": 0o600}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": {"socket_address": {"address": config.listen_host, "port_value": config.port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": connection_manager,
                                }
                            ],
                            **(
                                {"transport_socket": downstream_socket(config.downstream_tls)}
                                if config.downstream_tls
                                else {}
                            ),
                        }
                    ],
                },
                _admin_listener(config),
            ],
            "clusters": [
                _admin_cluster(config),
                _cluster(config.api_server, config.upstream_tls),
                _cluster(config.scheduler, config.upstream_tls),
                *([_actuator_cluster(config.actuator)] if config.actuator else []),
            ],
        },
    }
