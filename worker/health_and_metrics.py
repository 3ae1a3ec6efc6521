"""The worker's health and metrics.

Health: a gRPC server with only the standard health service on TASKMESH_WORKER_HEALTH_LISTEN,
SERVING while the RabbitMQ consumer is consuming (checked every few seconds) and NOT_SERVING
from the moment the worker is told to stop.

Metrics on TASKMESH_WORKER_METRICS_LISTEN, computed at scrape time from the worker's own
counters: slots, busy slots, work units waiting for a slot, attempts executed, work units
dead-lettered (malformed) and handed back at shutdown, whether it consumes and whether its
scheduler stream is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from taskmesh.health import HealthMonitor
from taskmesh.metrics import HttpListener, metrics_app, serve_http
from taskmesh.rpc.server import BuiltServer, build_health_server
from taskmesh.service_errors import BrokerUnavailable
from taskmesh.settings import Settings
from taskmesh.tls import server_tls
from worker.admission import Admission
from worker.consumer import WorkConsumer
from worker.pipeline import Pipeline
from worker.session import SchedulerSession


class WorkerCollector:
    def __init__(
        self,
        slots: int,
        pipeline: Pipeline,
        admission: Admission,
        consumer: WorkConsumer,
        session: SchedulerSession,
    ) -> None:
        self._slots = slots
        self._pipeline = pipeline
        self._admission = admission
        self._consumer = consumer
        self._session = session

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("taskmesh_worker_slots", "Attempts this worker runs at once", self._slots)
        yield GaugeMetricFamily("taskmesh_worker_busy_slots", "Attempts executing now", self._pipeline.busy)
        yield GaugeMetricFamily(
            "taskmesh_worker_waiting_work_units", "Work units held, waiting for a slot", self._admission.waiting
        )
        yield CounterMetricFamily(
            "taskmesh_worker_executed", "Attempts executed and settled", self._pipeline.executed
        )
        yield CounterMetricFamily(
            "taskmesh_worker_dead_lettered",
            "Malformed work units rejected to the dead-letter queue",
            self._pipeline.dead_lettered,
        )
        yield CounterMetricFamily(
            "taskmesh_worker_handed_back",
            "Work units handed back unstarted (nack) when the worker stopped",
            self._admission.handed_back,
        )
        yield GaugeMetricFamily(
            "taskmesh_worker_consuming",
            "1 while consuming the work queue",
            float(self._consumer.consuming.is_set()),
        )
        yield GaugeMetricFamily(
            "taskmesh_worker_scheduler_connected",
            "1 while the scheduler stream is up",
            float(self._session.connected),
        )


class WorkerMonitoring:
    def __init__(self, settings: Settings, collector: WorkerCollector, consumer: WorkConsumer) -> None:
        self._settings = settings
        self._collector = collector
        self._consumer = consumer
        self._health: BuiltServer | None = None
        self.monitor = HealthMonitor(
            {"broker": self._consuming},
            gating={"broker"},
            on_serving=self._set_serving,
            interval=settings.health_check_interval,
        )
        self._task: asyncio.Task[None] | None = None
        self._listener: HttpListener | None = None

    async def _consuming(self) -> dict[str, Any] | None:
        if not self._consumer.consuming.is_set():
            raise BrokerUnavailable("not consuming the work queue")
        return None

    async def _set_serving(self, serving: bool) -> None:
        if self._health is not None:
            await self._health.set_serving(serving)

    async def start(self) -> None:
        REGISTRY.register(self._collector)
        self._listener = serve_http(self._settings.worker_metrics_listen, metrics_app(), "worker metrics")
        if self._settings.worker_health_listen:
            self._health = build_health_server(self._settings.worker_health_listen, server_tls(self._settings))
            await self._health.set_serving(False)
            await self._health.server.start()
        self._task = asyncio.create_task(self.monitor.run_forever())

    async def stopping(self) -> None:
        """The worker takes no more work: say NOT_SERVING from now on."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._set_serving(False)

    async def stop(self) -> None:
        await self.stopping()
        if self._health is not None:
            await self._health.server.stop(grace=1)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        REGISTRY.unregister(self._collector)
