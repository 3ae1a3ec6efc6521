"""Prometheus plumbing shared by the processes: the HTTP listener, background samplers for
gauges that need I/O, the run metrics more than one process counts, and relabelling/merging
of metric families (for the gateway's aggregate).

Every process registers on prometheus_client's default registry (which also carries the
process_* and python_* collectors); each serves it on its own TASKMESH_*_METRICS_LISTEN.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from socketserver import ThreadingMixIn
from typing import Any, Generic, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

# *_created series double every counter's output and nobody here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

T = TypeVar("T")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

RUNS_FINISHED = Counter(
    "taskmesh_runs_finished",
    "Runs that reached a terminal state, by state and executor kind (none: cancelled before any attempt ran)",
    ["state", "executor"],
)


@lru_cache(maxsize=8192)
def labelled(metric: Any, *values: str) -> Any:
    """metric.labels(*values), cached: a dict lookup on the paths of runs and RPCs instead of a
    locked lookup with validation (label values here come from small fixed sets)."""
    return metric.labels(*values)


def executor_kind(executor: Mapping[str, Any] | str | None) -> str:
    """'http', 'shell', 'sleep', 'noop' from an executor's protobuf JSON (parsed, or its text)."""
    if isinstance(executor, str):
        return _kind_of_json_text(executor)
    return next(iter(executor), "unknown") if executor else "unknown"


@functools.lru_cache(maxsize=4096)
def _kind_of_json_text(executor_json: str) -> str:
    return executor_kind(json.loads(executor_json))


def split_listen(listen: str) -> tuple[str, int]:
    """'host:port' (or '[::]:port') -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpListener:
    """A WSGI app served from a daemon thread, off the event loop."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self.port = server.server_port
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_http(listen: str, app: WsgiApp, what: str = "metrics") -> HttpListener | None:
    """Serve `app` on `listen`; None when disabled ("") or when the port is taken: metrics must
    never stop a process from doing its work."""
    if not listen:
        return None
    host, port = split_listen(listen)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    try:
        server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    except OSError as error:
        log.error("cannot serve %s on %s (%s); continuing without them", what, listen, error)
        return None
    log.info("%s on http://%s/metrics", what, listen)
    return HttpListener(server)


def metrics_app(registry: CollectorRegistry = REGISTRY) -> WsgiApp:
    app: WsgiApp = prometheus_client.make_wsgi_app(registry)
    return app


class Sampler(Generic[T]):
    """Calls `sample` every `interval` seconds and keeps the latest value, so that collectors
    read a cached number at scrape time instead of doing I/O. `value` is None until the first
    success and again after a failure (a collector then reports nothing rather than a stale
    number)."""

    def __init__(self, name: str, sample: Callable[[], Awaitable[T]], interval: float) -> None:
        self.name = name
        self._sample = sample
        self._interval = interval
        self.value: T | None = None

    async def run_forever(self) -> None:
        failing = False
        while True:
            try:
                self.value = await asyncio.wait_for(self._sample(), timeout=max(self._interval, 1.0))
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.value = None
                if not failing:
                    log.warning("sampling %s failed (%s); retrying every %.0fs", self.name, error, self._interval)
                failing = True
            await asyncio.sleep(self._interval)


def parse_exposition(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def relabelled(families: Iterable[Metric], labels: Mapping[str, str]) -> list[Metric]:
    """Copies of the families with `labels` added to every sample."""
    copies = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [sample._replace(labels={**sample.labels, **labels}) for sample in family.samples]
        copies.append(copy)
    return copies


def merged(sources: Sequence[Iterable[Metric]]) -> list[Metric]:
    """One family per name with the samples of every source (sources must not share a label
    set within a family: relabel them first)."""
    by_name: dict[str, Metric] = {}
    for families in sources:
        for family in families:
            target = by_name.get(family.name)
            if target is None:
                target = by_name[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            target.samples.extend(family.samples)
    return list(by_name.values())


class StaticCollector:
    """Exposes a fixed list of families (the registry API wants collectors)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(families))
    return prometheus_client.generate_latest(registry)
