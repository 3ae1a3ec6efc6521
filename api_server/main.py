"""taskmesh-api: serves JobService, AuthService and NotificationService."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from api_server.accounts import Accounts
from api_server.health_and_metrics import STALE_AFTER_INTERVALS, ApiMonitoring
from api_server.jobs import Jobs
from api_server.notification_servicer import NotificationServicer
from api_server.notifications import Notifications
from api_server.run_telemetry import CacheStats, CancelObserver
from api_server.runs import Runs
from api_server.secret_servicer import SecretServicer
from api_server.secrets import Secrets
from api_server.service_accounts import KeyLifetimes, ServiceAccounts
from api_server.servicers import AuthServicer, JobServicer
from api_server.throttling import LoginLimits, LoginThrottle
from api_server.waiting import WorkerCapacity
from api_server.watch import RunWatcher
from api_server.workers import WorkerRoster
from taskmesh.audit import AuditRecorder
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.key_usage import KeyUsageRecorder
from taskmesh.auth.passwords import PasswordHashing
from taskmesh.auth.tokens import TokenCodec
from taskmesh.cache.status import CacheWriter, StatusCache, connect_redis
from taskmesh.db.admission import AdmissionRepository
from taskmesh.db.audit import AuditRepository
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.notifications import NotificationRepository
from taskmesh.db.pg import Database
from taskmesh.db.probes import DatabaseProbe
from taskmesh.db.runs import RunRepository
from taskmesh.db.schedules import ScheduleRepository
from taskmesh.db.schema import ensure_schema
from taskmesh.db.secrets import SecretRepository
from taskmesh.db.service_accounts import ServiceAccountRepository
from taskmesh.db.throttle import ThrottleRepository
from taskmesh.db.users import UserRepository
from taskmesh.db.worker_sessions import WorkerSessionRepository
from taskmesh.guarded_http import worker_policy
from taskmesh.names import Names
from taskmesh.process import run_until_signalled
from taskmesh.process_logging import configure_logging
from taskmesh.rpc.peers import parse_networks
from taskmesh.rpc.server import build_server
from taskmesh.service_errors import TaskmeshError
from taskmesh.settings import DEV_ADMIN_PASSWORD, Settings, get_settings
from taskmesh.states import Role
from taskmesh.tls import server_tls
from taskmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    notification_service_pb2,
    notification_service_pb2_grpc,
    secret_service_pb2,
    secret_service_pb2_grpc,
)

log = logging.getLogger("api_server")

JOB_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
AUTH_SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
NOTIFICATION_SERVICE = notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name
SECRET_SERVICE = secret_service_pb2.DESCRIPTOR.services_by_name["SecretService"].full_name


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.check_secure()
    await asyncio.to_thread(ensure_schema, settings.database_url)
    engine = Database(
        settings.database_url,
        settings.database_pool_size,
        application_name="taskmesh-api",
        min_size=settings.database_pool_min_size,
    )
    redis = connect_redis(settings.redis_url)
    tokens = TokenCodec(settings.jwt_secret, settings.jwt_ttl_seconds)
    names = Names(settings.namespace)
    cache = StatusCache(redis, names, settings.status_cache_ttl)
    cache_writer = CacheWriter(cache)
    users = UserRepository(engine)
    service_account_repository = ServiceAccountRepository(engine)
    key_usage = KeyUsageRecorder(service_account_repository, settings.api_key_last_used_flush_seconds)
    credentials = CredentialDirectory(
        users, settings.credential_refresh_interval, settings.credential_max_staleness, usage=key_usage
    )
    audit_repository = AuditRepository(engine)
    service_accounts = ServiceAccounts(
        service_account_repository,
        audit_repository,
        KeyLifetimes(
            default=timedelta(days=settings.api_key_default_ttl_days),
            maximum=timedelta(days=settings.api_key_max_ttl_days),
        ),
    )
    passwords = PasswordHashing(
        settings.password_hash_threads,
        settings.password_hash_queue,
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
    )
    throttle = LoginThrottle(ThrottleRepository(engine), LoginLimits.from_settings(settings))
    accounts = Accounts(users, tokens, passwords, throttle)
    await accounts.ensure_account(settings.admin_username, settings.admin_password, Role.ADMIN)
    await accounts.ensure_account(settings.worker_username, settings.worker_password, Role.WORKER)
    if settings.is_development and settings.admin_password == DEV_ADMIN_PASSWORD:
        log.warning("development mode: admin account %r has the default password", settings.admin_username)
    job_repository, run_repository = JobRepository(engine), RunRepository(engine)
    cache_stats = CacheStats()
    jobs = Jobs(job_repository, run_repository, cache, cache_writer, ScheduleRepository(engine), cache_stats)
    log_repository = LogRepository(engine)
    runs = Runs(
        job_repository,
        run_repository,
        log_repository,
        cache_writer,
        observers=[CancelObserver()],
        admission=AdmissionRepository(engine),
    )
    capacity = WorkerCapacity(max_age=STALE_AFTER_INTERVALS * settings.health_check_interval)
    roster = WorkerRoster(WorkerSessionRepository(engine), capacity)
    job_servicer = JobServicer(jobs, runs, RunWatcher(run_repository, log_repository, redis, names), roster)
    # Channel URLs are judged by the egress policy the schedulers deliver under (same settings).
    notification_servicer = NotificationServicer(
        Notifications(NotificationRepository(engine), worker_policy(settings))
    )
    secret_servicer = SecretServicer(Secrets(SecretRepository(engine), settings.secret_box()))

    built = build_server(
        settings.api_listen,
        tokens,
        [
            (
                JOB_SERVICE,
                lambda s: job_service_pb2_grpc.add_JobServiceServicer_to_server(job_servicer, s),
            ),
            (
                AUTH_SERVICE,
                lambda s: auth_service_pb2_grpc.add_AuthServiceServicer_to_server(
                    AuthServicer(accounts, service_accounts, parse_networks(settings.login_trusted_proxies)), s
                ),
            ),
            (
                NOTIFICATION_SERVICE,
                lambda s: notification_service_pb2_grpc.add_NotificationServiceServicer_to_server(
                    notification_servicer, s
                ),
            ),
            (
                SECRET_SERVICE,
                lambda s: secret_service_pb2_grpc.add_SecretServiceServicer_to_server(secret_servicer, s),
            ),
        ],
        credentials,
        server_tls(settings),
        audit=AuditRecorder(audit_repository),
    )
    monitoring = ApiMonitoring(
        settings,
        DatabaseProbe(engine, settings.database_url),
        redis,
        names,
        built,
        roster,
        credentials,
        cache_stats,
    )
    await built.set_serving(False)  # until the monitor has seen PostgreSQL
    await credentials.refresh()
    await built.server.start()
    writer_task = asyncio.create_task(cache_writer.run_forever())
    auth_tasks = [
        asyncio.create_task(credentials.run_forever()),
        asyncio.create_task(throttle.run_forever()),
        asyncio.create_task(key_usage.run_forever()),
    ]
    await monitoring.start()
    log.info("api_server listening on %s", settings.api_listen)
    await stop.wait()
    log.info("api_server stopping: draining in-flight calls")
    await monitoring.stop()
    await built.set_serving(False)
    await built.server.stop(grace=10)
    await cache_writer.flush()
    with contextlib.suppress(TaskmeshError):
        await key_usage.flush()
    for task in (writer_task, *auth_tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    passwords.close()
    await redis.aclose()
    await engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging("api_server", settings.log_level, settings.log_json)
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
