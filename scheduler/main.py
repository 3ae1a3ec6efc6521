"""taskmesh-scheduler: serves WorkerService and relays the outbox to RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import REGISTRY

from scheduler.admission import AdmissionLoop, AdmissionMetrics
from scheduler.attempts import AttemptLedger
from scheduler.dispatch_bound import DispatchBound
from scheduler.firing import FiringConfig, ScheduleFiring
from scheduler.firing_metrics import FiringMetrics
from scheduler.health_and_metrics import SchedulerMonitoring
from scheduler.maintenance import Maintenance, RetentionSettings, RetentionSweeper, RetryWake
from scheduler.notify_delivery import DeliveryConfig, NotificationDelivery, WebhookPoster
from scheduler.notify_scan import NotificationScan, ScanConfig
from scheduler.relay import OutboxRelay
from scheduler.run_telemetry import RunObserver, WorkerRoster
from scheduler.secret_resolver import SecretResolver
from scheduler.worker_servicer import WorkerServicer
from taskmesh import schedule_policy
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.tokens import TokenCodec
from taskmesh.cache.status import CacheWriter, StatusCache, connect_redis
from taskmesh.db import schedules as schedule_store
from taskmesh.db.admission import ADMISSION_CHANNEL, AdmissionRepository
from taskmesh.db.audit import purge_audit_events
from taskmesh.db.listen import listen_forever
from taskmesh.db.logs import LogRepository
from taskmesh.db.notifications import NotificationRepository
from taskmesh.db.outbox import NOTIFY_CHANNEL, OutboxRepository
from taskmesh.db.pg import Database
from taskmesh.db.probes import DatabaseProbe
from taskmesh.db.run_purge import RunPurgeRepository
from taskmesh.db.runs import CANCEL_CHANNEL, RunRepository
from taskmesh.db.schema import ensure_schema
from taskmesh.db.secrets import SecretRepository
from taskmesh.db.users import UserRepository
from taskmesh.db.worker_sessions import WorkerSessionRepository
from taskmesh.guarded_http import worker_policy
from taskmesh.names import Names
from taskmesh.notify.retries import RetrySchedule
from taskmesh.patches import coalesce_pika_writes
from taskmesh.process import run_until_signalled
from taskmesh.process_logging import configure_logging
from taskmesh.records import AttemptRef
from taskmesh.rpc.server import build_server
from taskmesh.settings import Settings, get_settings
from taskmesh.tls import server_tls
from taskmesh.v1 import worker_service_pb2, worker_service_pb2_grpc

log = logging.getLogger("scheduler")

WORKER_SERVICE = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
# At shutdown, seconds the WorkerService streams get to answer what is in flight before they end.
STREAM_DRAIN_SECONDS = 5.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.check_secure()
    await asyncio.to_thread(ensure_schema, settings.database_url)
    names = Names(settings.namespace)
    engine = Database(
        settings.database_url,
        settings.database_pool_size,
        check=False,
        application_name="taskmesh-scheduler",
        min_size=settings.database_pool_min_size,
    )
    redis = connect_redis(settings.redis_url)
    cache_writer = CacheWriter(StatusCache(redis, names, settings.status_cache_ttl))
    runs = RunRepository(engine)
    roster = WorkerRoster()
    observer = RunObserver(roster)
    maintenance = Maintenance(
        runs,
        cache_writer,
        settings.timeout_grace_seconds,
        observers=[observer],
        lease_seconds=settings.lease_seconds,
    )
    ledger = AttemptLedger(
        runs,
        LogRepository(engine),
        cache_writer,
        settings.lease_seconds,
        WorkerSessionRepository(engine),
        observers=[observer, RetryWake(maintenance)],
    )
    outbox_wake = asyncio.Event()
    relay = OutboxRelay(
        OutboxRepository(engine),
        settings.amqp_url,
        names,
        outbox_wake,
        settings.relay_batch_size,
        settings.relay_poll_interval,
        bound=DispatchBound(settings.dispatch_max_in_flight, settings.dispatch_recheck_interval),
    )
    admission_wake = asyncio.Event()
    admission = AdmissionLoop(
        AdmissionRepository(engine),
        cache_writer,
        admission_wake,
        AdmissionMetrics(REGISTRY),
        batch_size=settings.admission_batch_size,
        poll_interval=settings.admission_poll_interval,
        rate_poll_interval=settings.admission_rate_poll_interval,
    )
    scheduler_id = settings.scheduler_id or f"{socket.gethostname()}-{os.getpid()}"
    metrics = FiringMetrics(scheduler_id, REGISTRY)
    firing_wake = asyncio.Event()
    firing = ScheduleFiring(
        schedule_store.ScheduleRepository(engine),
        cache_writer,
        metrics,
        firing_wake,
        FiringConfig(
            batch_size=settings.schedule_batch_size,
            poll_interval=settings.schedule_poll_interval,
            rules=schedule_policy.FiringRules(
                misfire_threshold=timedelta(seconds=settings.schedule_misfire_threshold)
            ),
        ),
    )
    notify_scan, notify_delivery, poster = _notifications(settings, NotificationRepository(engine))
    servicer = WorkerServicer(ledger, roster, SecretResolver(SecretRepository(engine), settings.secret_box()))
    # Worker tokens are checked against the users table too: a revoked one opens no new stream.
    credentials = CredentialDirectory(
        UserRepository(engine), settings.credential_refresh_interval, settings.credential_max_staleness
    )
    built = build_server(
        settings.scheduler_listen,
        TokenCodec(settings.jwt_secret, settings.jwt_ttl_seconds),
        [
            (
                WORKER_SERVICE,
                lambda s: worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, s),
            )
        ],
        credentials,
        server_tls(settings),
    )
    monitoring = SchedulerMonitoring(
        settings, DatabaseProbe(engine, settings.database_url), names, built, roster, relay.link
    )
    await built.set_serving(False)  # until the monitor has seen PostgreSQL and RabbitMQ
    await built.server.start()
    background = [
        asyncio.create_task(credentials.run_forever()),
        asyncio.create_task(
            listen_forever(
                settings.database_url,
                {
                    NOTIFY_CHANNEL: lambda _: outbox_wake.set(),
                    CANCEL_CHANNEL: _cancel_pusher(servicer),
                    schedule_store.NOTIFY_CHANNEL: lambda _: firing_wake.set(),
                    ADMISSION_CHANNEL: lambda _: admission_wake.set(),
                },
                application_name="taskmesh-scheduler-listen",
            )
        ),
        asyncio.create_task(relay.run_forever()),
        asyncio.create_task(maintenance.run_forever()),
        asyncio.create_task(
            RetentionSweeper(
                RunPurgeRepository(engine),
                RetentionSettings.from_settings(settings),
                audit=functools.partial(purge_audit_events, engine),
            ).run_forever()
        ),
        asyncio.create_task(cache_writer.run_forever()),
        asyncio.create_task(firing.run_forever()),
        asyncio.create_task(notify_scan.run_forever()),
        asyncio.create_task(notify_delivery.run_forever()),
        asyncio.create_task(admission.run_forever()),
    ]
    await monitoring.start()
    log.info("scheduler %s listening on %s", scheduler_id, settings.scheduler_listen)
    await stop.wait()
    log.info("scheduler stopping: ending worker streams, draining in-flight calls")
    await monitoring.stop()
    await built.set_serving(False)
    await servicer.close_streams(STREAM_DRAIN_SECONDS)
    await built.server.stop(grace=10)
    await servicer.settle(timeout=5)
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await cache_writer.flush()
    await poster.aclose()
    await redis.aclose()
    await engine.dispose()


def _notifications(
    settings: Settings, repository: NotificationRepository
) -> tuple[NotificationScan, NotificationDelivery, WebhookPoster]:
    """The event scan and the delivery loop; webhooks obey the same egress policy as jobs."""
    wake = asyncio.Event()
    scan = NotificationScan(
        repository,
        ScanConfig(
            interval=settings.notification_scan_interval,
            settle=settings.notification_scan_settle_seconds,
            batch_size=settings.notification_scan_batch_size,
            stuck_interval=settings.notification_stuck_scan_interval,
        ),
        wake,
    )
    poster = WebhookPoster(worker_policy(settings), settings.notification_timeout_seconds)
    config = DeliveryConfig(
        batch_size=settings.notification_delivery_batch_size,
        poll_interval=settings.notification_delivery_poll_interval,
        timeout=settings.notification_timeout_seconds,
        schedule=RetrySchedule(
            initial_seconds=settings.notification_retry_initial_seconds,
            max_seconds=settings.notification_retry_max_seconds,
            max_attempts=settings.notification_max_attempts,
        ),
    )
    return scan, NotificationDelivery(repository, poster, config, wake), poster


def _cancel_pusher(servicer: WorkerServicer) -> Callable[[str], None]:
    """NOTIFY payload 'run_id:attempt:worker_id' (trigger run_cancelling_notify) -> push."""

    def push(payload: str) -> None:
        run_id, _, rest = payload.partition(":")
        attempt, _, worker_id = rest.partition(":")
        if run_id and attempt.isdigit() and worker_id:
            servicer.push_cancel(AttemptRef(run_id, int(attempt)), worker_id)

    return push


def main() -> None:
    settings = get_settings()
    configure_logging("scheduler", settings.log_level, settings.log_json)
    coalesce_pika_writes()
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
