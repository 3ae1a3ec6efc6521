"""The scheduler's health and metrics: a monitor behind its gRPC health service, gauges sampled
in the background, and /metrics on TASKMESH_SCHEDULER_METRICS_LISTEN.

NOT_SERVING while PostgreSQL (a `SELECT 1` on a connection of its own) or RabbitMQ (the outbox
relay's connection) is out of reach. Gauges computed at scrape time: connected workers, their
slots and busy slots (from the scheduler's WorkerRoster), queue depth and consumers
(passive declares every few seconds), outbox backlog and active leases (one small query every
few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from scheduler.run_telemetry import ConnectionWatch, WorkerRoster
from taskmesh.broker.probe import QueueDepth, QueueProbe
from taskmesh.db.probes import DatabaseGauges, DatabaseProbe
from taskmesh.health import HealthMonitor
from taskmesh.metrics import HttpListener, Sampler, metrics_app, serve_http
from taskmesh.names import Names
from taskmesh.rpc.server import BuiltServer
from taskmesh.settings import Settings

GAUGE_POLL_SECONDS = 5.0


class SchedulerCollector:
    def __init__(
        self,
        workers: WorkerRoster,
        queues: Sampler[dict[str, QueueDepth]],
        database: Sampler[DatabaseGauges],
    ) -> None:
        self._workers = workers
        self._queues = queues
        self._database = database

    def collect(self) -> Iterable[Metric]:
        loads = self._workers.loads()
        yield GaugeMetricFamily(
            "taskmesh_workers_connected", "Workers with a stream to this scheduler", len(loads)
        )
        slots = GaugeMetricFamily(
            "taskmesh_connected_worker_slots", "Slots of each connected worker", labels=["worker"]
        )
        busy = GaugeMetricFamily(
            "taskmesh_connected_worker_busy_slots",
            "Attempts each connected worker holds (claimed, not ended)",
            labels=["worker"],
        )
        for load in loads:
            slots.add_metric([load.worker_id], load.slots)
            busy.add_metric([load.worker_id], load.busy)
        yield slots
        yield busy
        yield from self._queue_families()
        gauges = self._database.value
        if gauges is not None:
            yield GaugeMetricFamily(
                "taskmesh_outbox_backlog", "Work units written but not yet published", gauges.outbox_backlog
            )
            yield GaugeMetricFamily(
                "taskmesh_active_leases",
                "Attempts held by a worker under an unexpired lease",
                gauges.active_leases,
            )

    def _queue_families(self) -> Iterable[Metric]:
        depths = self._queues.value
        if depths is None:
            return
        messages = GaugeMetricFamily(
            "taskmesh_queue_messages", "Messages ready in a RabbitMQ queue", labels=["queue"]
        )
        consumers = GaugeMetricFamily(
            "taskmesh_queue_consumers", "Consumers of a RabbitMQ queue", labels=["queue"]
        )
        for queue, depth in depths.items():
            messages.add_metric([queue], depth.messages)
            consumers.add_metric([queue], depth.consumers)
        yield messages
        yield consumers


class SchedulerMonitoring:
    def __init__(
        self,
        settings: Settings,
        database: DatabaseProbe,
        names: Names,
        built: BuiltServer,
        workers: WorkerRoster,
        relay: ConnectionWatch,
    ) -> None:
        self._settings = settings
        self._database = database
        self._queues = QueueProbe(settings.amqp_url, names, "metrics")
        queues = [*names.work_queues(), names.dead_letter_queue]
        self._queue_depths = Sampler("queue depths", lambda: self._queues.depths(queues), GAUGE_POLL_SECONDS)
        self._database_gauges = Sampler("outbox backlog", self._database.gauges, GAUGE_POLL_SECONDS)
        self._collector = SchedulerCollector(workers, self._queue_depths, self._database_gauges)
        self.monitor = HealthMonitor(
            {"database": self._ping, "broker": relay.check},
            gating={"database", "broker"},
            on_serving=built.set_serving,
            interval=settings.health_check_interval,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: HttpListener | None = None

    async def _ping(self) -> dict[str, Any] | None:
        await self._database.ping()
        return None

    async def start(self) -> None:
        REGISTRY.register(self._collector)
        self._listener = serve_http(self._settings.scheduler_metrics_listen, metrics_app(), "scheduler metrics")
        await self.monitor.check_once()
        for loop in (
            self.monitor.run_forever(),
            self._queue_depths.run_forever(),
            self._database_gauges.run_forever(),
        ):
            self._tasks.append(asyncio.create_task(loop))

    async def stop(self) -> None:
        """Stop checking (the caller then says NOT_SERVING itself) and close the listener."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        REGISTRY.unregister(self._collector)
        await self._queues.close()
        await self._database.close()
