"""taskmesh-worker: takes work units off RabbitMQ and runs them under the scheduler's eye."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from taskmesh.guarded_http import worker_policy
from taskmesh.names import DEFAULT_POOL, Names, valid_pool_name
from taskmesh.patches import coalesce_pika_writes
from taskmesh.process import run_until_signalled
from taskmesh.process_logging import configure_logging
from taskmesh.settings import Settings, get_settings
from taskmesh.tasks import load_registry
from taskmesh.tls import client_tls
from taskmesh.v1 import worker_service_pb2 as pb
from worker.admission import Admission
from worker.consumer import WorkConsumer
from worker.credentials import TokenSource
from worker.executions import Executions
from worker.executors.python import PythonExecutor
from worker.executors.registry import ExecutorRegistry
from worker.health_and_metrics import WorkerCollector, WorkerMonitoring
from worker.layers import standard_layers
from worker.pipeline import Pipeline
from worker.session import SchedulerSession
from worker.shutdown import wind_down

log = logging.getLogger("worker")


def worker_id(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions:
    """What the command line adds to the settings: the pools served and the task registry."""

    pools: tuple[str, ...] = (DEFAULT_POOL,)
    tasks: str = ""


def parse_options(argv: Sequence[str] | None, settings: Settings) -> WorkerOptions:
    parser = argparse.ArgumentParser(prog="taskmesh-worker", description="Runs the work of its pools.")
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        help="a pool to take work from (repeatable; default: TASKMESH_WORKER_POOLS, else 'default')",
    )
    parser.add_argument(
        "--tasks", default=settings.worker_tasks, help="module:attribute of a taskmesh.tasks.TaskRegistry"
    )
    args = parser.parse_args(argv)
    pools = args.pool or [p.strip() for p in settings.worker_pools.split(",") if p.strip()] or [DEFAULT_POOL]
    for pool in pools:
        if not valid_pool_name(pool):
            parser.error(f"--pool {pool!r}: 1-63 lowercase letters, digits, '_' and '-'")
    return WorkerOptions(pools=tuple(dict.fromkeys(pools)), tasks=args.tasks)


def python_executor(options: WorkerOptions, settings: Settings) -> PythonExecutor | None:
    if not options.tasks:
        return None
    return PythonExecutor(load_registry(options.tasks), options.tasks, threads=settings.worker_task_threads)


async def serve(settings: Settings, stop: asyncio.Event, options: WorkerOptions | None = None) -> None:
    options = options or WorkerOptions()
    identity = worker_id(settings)
    executors = ExecutorRegistry(
        settings.worker_shell_enabled, egress=worker_policy(settings), python=python_executor(options, settings)
    )
    tls = client_tls(settings)
    tokens = TokenSource(settings.api_address, settings.worker_username, settings.worker_password, tls)
    hello = pb.Hello(
        worker_id=identity,
        executors=executors.kinds,
        slots=settings.worker_slots,
        pools=options.pools,
        tasks=executors.tasks,
    )
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
        # routed by pool and capability: only work it can run reaches it
        queues=names.work_queues(executors.kinds, options.pools, executors.tasks),
        on_cancelled=admission.close,
        on_consuming=session.consumer_changed,
    )
    monitoring = WorkerMonitoring(
        settings, WorkerCollector(settings.worker_slots, pipeline, admission, consumer, session), consumer
    )
    session_task = asyncio.create_task(session.run_forever())
    consumer_task = asyncio.create_task(consumer.run_until_stopped())
    await monitoring.start()
    log.info(
        "worker %s started (%d slots, pools: %s, executors: %s, %d Python tasks)",
        identity,
        settings.worker_slots,
        ", ".join(options.pools),
        ", ".join(executors.kinds),
        len(executors.tasks),
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


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    options = parse_options(argv, settings)
    configure_logging("worker", settings.log_level, settings.log_json)
    coalesce_pika_writes()
    run_until_signalled(lambda stop: serve(settings, stop, options), fast_loop=False)


if __name__ == "__main__":
    main()
