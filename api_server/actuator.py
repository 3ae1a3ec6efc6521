"""Actuator-style HTTP endpoints, served by the api_server on TASKMESH_API_METRICS_LISTEN and
routed by the gateway (gateway/config.py) from the same paths.

GET /metrics                    this api_server's own metrics (what Prometheus scrapes per pod)
GET /actuator/health            UP/DOWN with detail: database, broker, cache, api_server,
                                scheduler, workers; 200 when UP, 503 when DOWN
GET /actuator/health/readiness  DOWN while the database is out of reach (nothing can be served)
GET /actuator/health/liveness   the api_server process itself: its event loop keeps checking
GET /actuator/prometheus        this api_server's metrics and those of every scheduler, each
                                sample labelled with process and instance; needs a bearer
                                token outside development (api_server/metrics_access.py)

Health documents are built from the health monitor's latest snapshot, never from I/O done
while answering: a probe costs nothing and cannot hang.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api_server.metrics_access import PUBLIC, Access, PrometheusAccess
from taskmesh.health import CheckResult, Snapshot
from taskmesh.metrics import exposition, merged, metrics_app, parse_exposition, relabelled

log = logging.getLogger(__name__)

UP, DOWN = "UP", "DOWN"
SCRAPE_TIMEOUT_SECONDS = 2.0
# The checks that make up each component of /actuator/health, by component name.
DEPENDENCIES = ("database", "broker", "cache", "scheduler")

StartResponse = Callable[..., Any]
Document = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class ScrapeTarget:
    process: str
    instance: str  # host:port
    url: str


def _component(result: CheckResult | None) -> dict[str, Any]:
    if result is None:
        return {"status": DOWN, "details": {"error": "not checked yet"}}
    component: dict[str, Any] = {"status": UP if result.up else DOWN}
    if result.details:
        component["details"] = dict(result.details)
    return component


def _workers(broker: CheckResult | None) -> dict[str, Any]:
    """Workers are the consumers of the work queue, as RabbitMQ counts them."""
    if broker is None or not broker.up:
        return {"status": DOWN, "details": {"error": "unknown while the broker is out of reach"}}
    count = int(broker.details.get("consumers", 0))
    details: dict[str, Any] = {"count": count}
    if count == 0:
        details["error"] = "no worker consumes the work queue"
    return {"status": UP if count else DOWN, "details": details}


def _overall(components: dict[str, dict[str, Any]]) -> Document:
    status = UP if all(c["status"] == UP for c in components.values()) else DOWN
    return (200 if status == UP else 503), {"status": status, "components": components}


def _stale(snapshot: Snapshot, stale_after: float) -> bool:
    return snapshot.age() > stale_after


def health(snapshot: Snapshot, stale_after: float) -> Document:
    if _stale(snapshot, stale_after):
        return 503, {"status": DOWN, "details": {"error": f"no health check for over {stale_after:g}s"}}
    components = {name: _component(snapshot.results.get(name)) for name in DEPENDENCIES}
    serving = "SERVING" if snapshot.serving else "NOT_SERVING"
    components["api_server"] = {"status": UP if snapshot.serving else DOWN, "details": {"grpc": serving}}
    components["workers"] = _workers(snapshot.results.get("broker"))
    return _overall(components)


def readiness(snapshot: Snapshot, stale_after: float) -> Document:
    if _stale(snapshot, stale_after):
        return 503, {"status": DOWN, "details": {"error": f"no health check for over {stale_after:g}s"}}
    return _overall({"database": _component(snapshot.results.get("database"))})


def liveness(snapshot: Snapshot, stale_after: float) -> Document:
    """Only the process itself: DOWN once its event loop stopped running health checks."""
    alive = not _stale(snapshot, stale_after)
    return (200 if alive else 503), {"status": UP if alive else DOWN}


def aggregate(
    local: CollectorRegistry, local_instance: str, targets: Sequence[ScrapeTarget], fetch: Callable[[str], str]
) -> bytes:
    """Local metrics plus each target's, every sample labelled with its process and instance;
    taskmesh_aggregate_up says which targets answered."""
    sources = [relabelled(local.collect(), {"process": "api_server", "instance": local_instance})]
    up = GaugeMetricFamily(
        "taskmesh_aggregate_up",
        "1 if this aggregate could read the process's metrics",
        labels=["process", "instance"],
    )
    up.add_metric(["api_server", local_instance], 1)
    for target in targets:
        try:
            families = parse_exposition(fetch(target.url))
        except (httpx.HTTPError, ValueError) as error:
            log.warning("cannot read %s metrics at %s: %s", target.process, target.url, error)
            up.add_metric([target.process, target.instance], 0)
            continue
        sources.append(relabelled(families, {"process": target.process, "instance": target.instance}))
        up.add_metric([target.process, target.instance], 1)
    return exposition(merged([*sources, [up]]))


def resolve_targets(process: str, host: str, port: int) -> list[ScrapeTarget]:
    """Every IPv4 address `host` resolves to (a headless Service: every pod), as Envoy does."""
    try:
        infos = socket.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except OSError as error:
        log.warning("cannot resolve %s (%s metrics): %s", host, process, error)
        return []
    addresses = sorted({str(info[4][0]) for info in infos})
    return [_target(process, address, port) for address in addresses]


def _target(process: str, address: str, port: int) -> ScrapeTarget:
    host = f"[{address}]" if ":" in address else address
    return ScrapeTarget(process, f"{host}:{port}", f"http://{host}:{port}/metrics")


def _fetch(url: str) -> str:
    response = httpx.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.text


class Actuator:
    """The WSGI application of the api_server's metrics listener."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        stale_after: float,
        local_instance: str,
        targets: Callable[[], list[ScrapeTarget]],
        registry: CollectorRegistry = REGISTRY,
        prometheus_access: PrometheusAccess = PUBLIC,
    ) -> None:
        self._snapshot = snapshot
        self._prometheus_access = prometheus_access
        self._stale_after = stale_after
        self._local_instance = local_instance
        self._targets = targets
        self._registry = registry
        self._metrics = metrics_app(registry)
        self._documents: dict[str, Callable[[Snapshot, float], Document]] = {
            "/actuator/health": health,
            "/actuator/health/readiness": readiness,
            "/actuator/health/liveness": liveness,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/").rstrip("/") or "/"
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, 405, b"only GET\n", "text/plain", [("Allow", "GET, HEAD")])
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path == "/actuator/prometheus":
            access = self._prometheus_access.check(environ.get("HTTP_AUTHORIZATION"))
            if access is not Access.ALLOWED:
                return _refused(start_response, access)
            body = aggregate(self._registry, self._local_instance, self._targets(), _fetch)
            return _reply(start_response, 200, body, CONTENT_TYPE_LATEST)
        if path in self._documents:
            status, document = self._documents[path](self._snapshot(), self._stale_after)
            return _reply(start_response, status, json.dumps(document).encode() + b"\n", "application/json")
        if path == "/actuator":
            links = {name: {"href": name} for name in [*self._documents, "/actuator/prometheus"]}
            return _reply(start_response, 200, json.dumps({"_links": links}).encode() + b"\n", "application/json")
        return _reply(start_response, 404, b"not found\n", "text/plain")


def _refused(start_response: StartResponse, access: Access) -> list[bytes]:
    if access is Access.FORBIDDEN:
        return _reply(start_response, 403, b"metrics need an admin or operator token\n", "text/plain")
    challenge = [("WWW-Authenticate", 'Bearer realm="taskmesh metrics"')]
    body = b"metrics need 'Authorization: Bearer <token>' (an admin or operator token, or the metrics token)\n"
    return _reply(start_response, 401, body, "text/plain", challenge)


STATUS_TEXT = {
    200: "200 OK",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


def _reply(
    start_response: StartResponse,
    status: int,
    body: bytes,
    content_type: str,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    start_response(
        STATUS_TEXT[status],
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]
