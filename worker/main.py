"""taskmesh-worker: takes work units off RabbitMQ and runs them under the scheduler's eye."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from taskmesh.guarded_http import worker_policy
from taskmesh.names import Names
from taskmesh.patches import coalesce_pika_writes
from taskmesh.process import run_until_signalled
from taskmesh.process_logging import configure_logging
from taskmesh.settings import Settings, get_settings
from taskmesh.tls import client_tls
from taskmesh.v1 import worker_service_pb2 as pb
from worker.admission import Admission
from worker.consumer import WorkConsumer
from worker.credentials import TokenSource
from worker.executions import Executions
from worker.executors.registry import ExecutorRegistry
from worker.health_and_metrics import WorkerCollector, WorkerMonitoring
from worker.layers import standard_layers
from worker.pipeline import Pipeline
from worker.session import SchedulerSession
from worker.shutdown import wind_down

log = logging.getLogger("worker")


def worker_id(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    identity = worker_id(settings)
    executors = ExecutorRegistry(settings.worker_shell_enabled, egress=worker_policy(settings))
    tls = client_tls(settings)
    tokens = TokenSource(settings.api_address, settings.worker_username, settings.worker_password, tls)
    hello = pb.Hello(worker_id=identity, executors=executors.kinds, slots=settings.worker_slots)
    executions = Executions()  # filled by the pipeline, read and stopped through by the session
    session = SchedulerSession(settings.scheduler_address, tokens, hello, executions, tls)
    pipeline = Pipeline(
        session,
        executors,
        executions,
        settings.worker_slots,
        settings.worker_kill_grace_seconds,
        layers=standard_layers(executions, session.leases),
    )
    admission = Admission(pipeline, settings.worker_slots)
    names = Names(settings.namespace)
    consumer = WorkConsumer(
        settings.amqp_url,
        names,
        admission,
        prefetch=settings.worker_slots + settings.worker_prefetch_extra,
        heartbeat=settings.amqp_heartbeat_seconds,
        queues=names.work_queues(executors.kinds),  # routed by capability: only work it can run
        on_cancelled=admission.close,
    )
    monitoring = WorkerMonitoring(
        settings, WorkerCollector(settings.worker_slots, pipeline, admission, consumer, session), consumer
    )
    session_task = asyncio.create_task(session.run_forever())
    consumer_task = asyncio.create_task(consumer.run_until_stopped())
    await monitoring.start()
    log.info(
        "worker %s started (%d slots, executors: %s)",
        identity,
        settings.worker_slots,
        ", ".join(executors.kinds),
    )
    await stop.wait()
    grace = settings.worker_shutdown_grace_seconds
    log.info("worker %s stopping: taking no more work, finishing what runs (up to %.0fs)", identity, grace)
    await monitoring.stopping()
    consumer.stop()
    if await wind_down(consumer_task, pipeline, grace):
        log.info("worker %s finished its work: %d work units handed back", identity, admission.handed_back)
    session_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await session_task
    await executors.close()
    await monitoring.stop()


def main() -> None:
    settings = get_settings()
    configure_logging("worker", settings.log_level, settings.log_json)
    coalesce_pika_writes()
    run_until_signalled(lambda stop: serve(settings, stop), fast_loop=False)


if __name__ == "__main__":
    main()
