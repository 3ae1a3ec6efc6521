"""The api_server's health and metrics: a monitor behind its gRPC health service and the
actuator endpoints, and the HTTP listener on TASKMESH_API_METRICS_LISTEN. The broker check's
consumer counts of every work queue also tell why QUEUED runs wait (api_server.waiting).

Checks, every TASKMESH_HEALTH_CHECK_INTERVAL seconds: the database (a `SELECT 1` on a
connection of its own; the only check that gates serving: without PostgreSQL the api_server
can answer nothing), the cache (Redis PING), the broker (a passive declare of each work queue,
which also counts the workers consuming it) and the scheduler (its gRPC health service).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from api_server.actuator import Actuator, ScrapeTarget, resolve_targets
from api_server.metrics_access import prometheus_access
from api_server.run_telemetry import CacheStats
from api_server.workers import WorkerRoster
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.broker.probe import QueueProbe
from taskmesh.db.probes import DatabaseProbe
from taskmesh.health import HealthMonitor
from taskmesh.metrics import HttpListener, serve_http, split_listen
from taskmesh.names import Names
from taskmesh.rpc.server import BuiltServer
from taskmesh.service_errors import Unavailable
from taskmesh.settings import Settings
from taskmesh.tls import aio_channel, client_tls

# Liveness fails once the monitor has not completed a round for this many intervals.
STALE_AFTER_INTERVALS = 5


class ApiMonitoring:
    def __init__(
        self,
        settings: Settings,
        database: DatabaseProbe,
        redis: aioredis.Redis,
        names: Names,
        built: BuiltServer,
        roster: WorkerRoster,
        credentials: CredentialDirectory,
        cache_stats: CacheStats,
    ) -> None:
        self._cache_stats = cache_stats
        self._settings = settings
        self._database = database
        self._redis = redis
        self._work_queue = names.work_queue
        self._work_queues = names.work_queues()
        self._roster = roster
        self._queues = QueueProbe(settings.amqp_url, names, "health")
        self._scheduler = aio_channel(settings.scheduler_address, client_tls(settings))
        interval = settings.health_check_interval
        self.monitor = HealthMonitor(
            {
                "database": self._ping,
                "cache": self._cache,
                "broker": self._broker,
                "scheduler": self._scheduler_health,
            },
            gating={"database"},
            on_serving=built.set_serving,
            interval=interval,
        )
        self.actuator = Actuator(
            lambda: self.monitor.snapshot,
            stale_after=max(STALE_AFTER_INTERVALS * interval, 10.0),
            local_instance=f"{socket.gethostname()}:{_port(settings.api_metrics_listen)}",
            targets=self._scheduler_targets,
            prometheus_access=prometheus_access(settings, credentials),
        )
        self._task: asyncio.Task[None] | None = None
        self._listener: HttpListener | None = None

    async def _ping(self) -> dict[str, Any] | None:
        await self._database.ping()
        await self._roster.refresh()  # the connected workers, for the waiting reasons
        return None

    async def _cache(self) -> dict[str, Any] | None:
        await self._redis.ping()
        return None

    async def _broker(self) -> dict[str, Any] | None:
        depths = await self._queues.depths(self._work_queues)
        depth = depths[self._work_queue]
        return {"queue": self._work_queue, "messages": depth.messages, "consumers": depth.consumers}

    async def _scheduler_health(self) -> dict[str, Any] | None:
        stub = health_pb2_grpc.HealthStub(self._scheduler)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self._settings.health_check_interval)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable(f"the scheduler at {self._settings.scheduler_address} is {status}")
        return {"address": self._settings.scheduler_address, "grpc": status}

    def _scheduler_targets(self) -> list[ScrapeTarget]:
        """The metrics listener of every scheduler behind TASKMESH_SCHEDULER_ADDRESS's host."""
        if not self._settings.scheduler_metrics_listen:
            return []
        host, _ = split_listen(self._settings.scheduler_address)
        return resolve_targets("scheduler", host, _port(self._settings.scheduler_metrics_listen))

    async def start(self) -> None:
        REGISTRY.register(self._cache_stats)
        self._listener = serve_http(
            self._settings.api_metrics_listen, self.actuator, "api_server metrics and actuator"
        )
        await self.monitor.check_once()
        self._task = asyncio.create_task(self.monitor.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        REGISTRY.unregister(self._cache_stats)
        await self._queues.close()
        await self._database.close()
        await self._scheduler.close()


def _port(listen: str) -> int:
    return split_listen(listen)[1] if listen else 0
