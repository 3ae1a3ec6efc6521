"""TaskmeshClient: every JobService, AuthService and NotificationService call with plain Python arguments.

Synchronous, over one gRPC channel. It logs in when given a username and password (and again
when the token expires or is refused), retries transient failures with exponential backoff
(see retry.py for which calls), and raises taskmesh.client.errors.ApiError subclasses.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.client import builders
from taskmesh.client.auth import Credentials, IssuedToken, TokenManager
from taskmesh.client.call_retry import CallKind, RetryPolicy, should_retry
from taskmesh.client.channel import DEFAULT_ADDRESS, open_channel, parse_address
from taskmesh.client.errors import from_rpc_error, status_code
from taskmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    notification_service_pb2,
    notification_service_pb2_grpc,
    retention_pb2,
    run_pb2,
    secret_service_pb2,
    secret_service_pb2_grpc,
)

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
T = TypeVar("T")

ExecutorLike = job_pb2.Executor | Mapping[str, Any]
ScheduleLike = job_pb2.Schedule | Mapping[str, Any]
RetryPolicyLike = job_pb2.RetryPolicy | Mapping[str, Any]
RetentionLike = retention_pb2.Retention | Mapping[str, Any]
RoleLike: TypeAlias = "auth_service_pb2.Role | str"

# The environment variable a client (and the CLI) takes a service account's API key from.
ENV_API_KEY = "TASKMESH_API_KEY"
API_KEY_PREFIX = "tmk_"

# Fields of Job that the server sets; dropped from a job before it is created or updated.
OUTPUT_ONLY_FIELDS = ("id", "create_time", "update_time", "paused", "next_fire_times", "last_fire_time")
# Paths UpdateJob takes (see UpdateJobRequest.update_mask).
UPDATABLE_FIELDS = (
    "name",
    "description",
    "executor",
    "labels",
    "schedule",
    "retry_policy",
    "attempt_timeout",
    "retention",
)


class TaskmeshClient:
    """A client of one Taskmesh server (the gateway, or an api_server directly).

    Give it a `token`, an `api_key` (a service account's "tmk_..." key, sent as the bearer
    credential as it is), or a `username` and `password` to log in with (it logs in again when
    the token is about to expire or the server refuses it). With none of them, the key in
    $TASKMESH_API_KEY is used if set; otherwise call login() later.
    `timeout` is the deadline of each unary call in seconds; `retry` says how often and how long
    to back off when the server is UNAVAILABLE (and, for reads, on DEADLINE_EXCEEDED).
    Use it as a context manager, or call close().
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        secure: bool | None = None,
        root_certificates: bytes | None = None,
        channel: grpc.Channel | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if api_key is None and token is None and username is None:
            api_key = os.environ.get(ENV_API_KEY) or None
        if api_key is not None:
            if token is not None or username is not None:
                raise ValueError("give an api_key, a token or a username and password, not several")
            if not api_key.startswith(API_KEY_PREFIX):
                raise ValueError(f"an API key starts with {API_KEY_PREFIX!r}")
            token = api_key
        self.target = parse_address(address, secure)
        self._channel = channel or open_channel(self.target, root_certificates)
        self._jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        self._auth = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self._notifications = notification_service_pb2_grpc.NotificationServiceStub(self._channel)
        self._secrets = secret_service_pb2_grpc.SecretServiceStub(self._channel)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        credentials = Credentials(username, password) if username is not None and password is not None else None
        self._tokens = TokenManager(token, credentials, self._issue_token)

    def __enter__(self) -> TaskmeshClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    @property
    def token(self) -> str | None:
        """The bearer token the next call sends (logging in first if needed)."""
        return self._tokens.current()

    # SecretService: values go in, never come back out

    def create_secret(self, name: str, value: str, description: str = "") -> secret_service_pb2.Secret:
        request = secret_service_pb2.CreateSecretRequest(name=name, value=value, description=description)
        return self._call(self._secrets.CreateSecret, request, CallKind.WRITE)

    def update_secret(self, name: str, value: str, description: str | None = None) -> secret_service_pb2.Secret:
        request = secret_service_pb2.UpdateSecretRequest(name=name, value=value, description=description)
        return self._call(self._secrets.UpdateSecret, request, CallKind.WRITE)

    def list_secrets(self) -> list[secret_service_pb2.Secret]:
        response = self._call(self._secrets.ListSecrets, secret_service_pb2.ListSecretsRequest(), CallKind.READ)
        return list(response.secrets)

    def delete_secret(self, name: str) -> None:
        self._call(self._secrets.DeleteSecret, secret_service_pb2.DeleteSecretRequest(name=name), CallKind.WRITE)

    def rotate_secrets(self) -> secret_service_pb2.RotateSecretsResponse:
        return self._call(self._secrets.RotateSecrets, secret_service_pb2.RotateSecretsRequest(), CallKind.WRITE)

    # AuthService

    def login(self, username: str, password: str) -> auth_service_pb2.LoginResponse:
        """Log in; later calls send the token and log in again with these credentials when needed."""
        credentials = Credentials(username, password)
        response = self._login_call(credentials)
        self._tokens.replace(_issued(response), credentials)
        return response

    def create_user(self, username: str, password: str, role: RoleLike) -> auth_service_pb2.User:
        """Create a user with role ADMIN, OPERATOR, VIEWER or WORKER (a name, any case, or the enum)."""
        role_name = role.upper() if isinstance(role, str) else auth_service_pb2.Role.Name(role)
        request = auth_service_pb2.CreateUserRequest(username=username, password=password, role=role_name)
        return self._call(self._auth.CreateUser, request, CallKind.WRITE)

    def list_users(self) -> list[auth_service_pb2.User]:
        response = self._call(self._auth.ListUsers, auth_service_pb2.ListUsersRequest(), CallKind.READ)
        return list(response.users)

    def update_user(
        self, username: str, *, role: RoleLike | None = None, password: str | None = None
    ) -> auth_service_pb2.User:
        """Change a user's role and/or password; its existing tokens stop working."""
        role_name = (
            None if role is None else role.upper() if isinstance(role, str) else auth_service_pb2.Role.Name(role)
        )
        request = auth_service_pb2.UpdateUserRequest(username=username, role=role_name, password=password or "")
        return self._call(self._auth.UpdateUser, request, CallKind.WRITE)

    def delete_user(self, username: str) -> None:
        self._call(self._auth.DeleteUser, auth_service_pb2.DeleteUserRequest(username=username), CallKind.WRITE)

    # Service accounts, API keys and the audit log (admin)

    def create_service_account(
        self, name: str, role: RoleLike, *, description: str = ""
    ) -> auth_service_pb2.ServiceAccount:
        """A service account with role ADMIN, OPERATOR or VIEWER; it calls with API keys."""
        role_name = role.upper() if isinstance(role, str) else auth_service_pb2.Role.Name(role)
        request = auth_service_pb2.CreateServiceAccountRequest(name=name, role=role_name, description=description)
        return self._call(self._auth.CreateServiceAccount, request, CallKind.WRITE)

    def list_service_accounts(self) -> list[auth_service_pb2.ServiceAccount]:
        request = auth_service_pb2.ListServiceAccountsRequest()
        return list(self._call(self._auth.ListServiceAccounts, request, CallKind.READ).service_accounts)

    def delete_service_account(self, name: str) -> None:
        """Delete a service account; its keys stop working on every server within seconds."""
        request = auth_service_pb2.DeleteServiceAccountRequest(name=name)
        self._call(self._auth.DeleteServiceAccount, request, CallKind.WRITE)

    def create_api_key(
        self, service_account: str, name: str, *, ttl: timedelta | None = None
    ) -> auth_service_pb2.CreateApiKeyResponse:
        """A new key; `response.key` is the key itself, shown this once (keep it secret)."""
        request = auth_service_pb2.CreateApiKeyRequest(service_account=service_account, name=name)
        if ttl is not None:
            request.ttl.CopyFrom(Duration(seconds=int(ttl.total_seconds())))
        return self._call(self._auth.CreateApiKey, request, CallKind.WRITE)

    def list_api_keys(self, service_account: str) -> list[auth_service_pb2.ApiKey]:
        request = auth_service_pb2.ListApiKeysRequest(service_account=service_account)
        return list(self._call(self._auth.ListApiKeys, request, CallKind.READ).api_keys)

    def revoke_api_key(self, service_account: str, key_id: str) -> None:
        """Revoke a key: refused by every server within seconds."""
        request = auth_service_pb2.RevokeApiKeyRequest(service_account=service_account, key_id=key_id)
        self._call(self._auth.RevokeApiKey, request, CallKind.WRITE)

    def list_audit_events(
        self,
        *,
        actor: str = "",
        resource: str = "",
        method: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> auth_service_pb2.ListAuditEventsResponse:
        """One page of audit events, newest first (filters optional; times are UTC-aware)."""
        request = auth_service_pb2.ListAuditEventsRequest(
            actor=actor, resource=resource, method=method, page_size=page_size, page_token=page_token
        )
        if start_time is not None:
            request.start_time.CopyFrom(_timestamp(start_time))
        if end_time is not None:
            request.end_time.CopyFrom(_timestamp(end_time))
        return self._call(self._auth.ListAuditEvents, request, CallKind.READ)

    def iter_audit_events(self, **filters: Any) -> Iterator[auth_service_pb2.AuditEvent]:
        """Every audit event matching the filters of list_audit_events, newest first."""

        def fetch(token: str) -> tuple[Sequence[auth_service_pb2.AuditEvent], str]:
            page = self.list_audit_events(**filters, page_token=token)
            return page.events, page.next_page_token

        return _paginate(fetch)

    # Jobs

    def create_job(
        self,
        name: str,
        executor: ExecutorLike,
        *,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        schedule: ScheduleLike | None = None,
        retry_policy: RetryPolicyLike | None = None,
        attempt_timeout: builders.DurationLike | None = None,
        retention: RetentionLike | None = None,
        pool: str = "",
        start_deadline: builders.DurationLike | None = None,
        priority: int | None = None,
        concurrency: job_pb2.ConcurrencyLimit | Mapping[str, Any] | None = None,
        rate_limit: job_pb2.RateLimit | Mapping[str, Any] | None = None,
    ) -> job_pb2.Job:
        """Create a job. `executor` is e.g. builders.sleep(2), builders.python("reports.build") or
        {"http": {"url": "https://..."}}; `pool` the worker pool that runs it ("default");
        `retention` e.g. builders.retention(succeeded="14d"). Flow control: `priority` 0-9,
        `concurrency` e.g. {"key": "customer-{{ job.name }}", "limit": 3}, `rate_limit` e.g.
        {"limit": 100, "period": "60s"} (README "Flow control")."""
        job = _job(name, description, executor, labels, schedule, retry_policy, attempt_timeout, retention)
        job.pool = pool
        if start_deadline is not None:
            job.start_deadline.CopyFrom(builders.duration(start_deadline))
        if priority is not None:
            job.priority = priority
        if concurrency is not None:
            job.concurrency.CopyFrom(builders.message(concurrency, job_pb2.ConcurrencyLimit))
        if rate_limit is not None:
            job.rate_limit.CopyFrom(builders.message(rate_limit, job_pb2.RateLimit))
        return self.create_job_from(job)

    def create_job_from(self, job: job_pb2.Job | Mapping[str, Any]) -> job_pb2.Job:
        """Create a job from a Job message or its JSON form (output-only fields are ignored)."""
        message = job_pb2.Job()
        message.CopyFrom(builders.message(job, job_pb2.Job))
        for field in OUTPUT_ONLY_FIELDS:
            message.ClearField(field)
        request = job_service_pb2.CreateJobRequest(job=message)
        return self._call(self._jobs.CreateJob, request, CallKind.WRITE)

    def get_job(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.GetJob, job_service_pb2.GetJobRequest(id=job_id), CallKind.READ)

    def find_job(self, name: str) -> job_pb2.Job | None:
        """The job with exactly this name, or None."""
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        page = self.list_jobs(filter=f'name="{quoted}"', page_size=1)
        return page.jobs[0] if page.jobs else None

    def list_jobs(
        self, *, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> job_service_pb2.ListJobsResponse:
        """One page of jobs, oldest first. See iter_jobs() to walk every page."""
        request = job_service_pb2.ListJobsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return self._call(self._jobs.ListJobs, request, CallKind.READ)

    def iter_jobs(self, *, filter: str = "", page_size: int = 0) -> Iterator[job_pb2.Job]:
        """Every job matching `filter` (e.g. 'labels.team=data AND state=FAILED'), page by page."""

        def fetch(token: str) -> tuple[Sequence[job_pb2.Job], str]:
            page = self.list_jobs(filter=filter, page_size=page_size, page_token=token)
            return page.jobs, page.next_page_token

        return _paginate(fetch)

    def update_job(
        self,
        job_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        executor: ExecutorLike | None = None,
        labels: Mapping[str, str] | None = None,
        schedule: ScheduleLike | None = None,
        retry_policy: RetryPolicyLike | None = None,
        attempt_timeout: builders.DurationLike | None = None,
        retention: RetentionLike | None = None,
        clear: Iterable[str] = (),
    ) -> job_pb2.Job:
        """Change the fields given (labels and schedule are replaced whole); `clear` names fields
        to reset to their defaults, e.g. clear=["schedule"] makes the job manual-only."""
        job = _job(
            name or "", description or "", executor, labels, schedule, retry_policy, attempt_timeout, retention
        )
        job.id = job_id
        given = {
            "name": name,
            "description": description,
            "executor": executor,
            "labels": labels,
            "schedule": schedule,
            "retry_policy": retry_policy,
            "attempt_timeout": attempt_timeout,
            "retention": retention,
        }
        cleared = list(clear)
        unknown = [path for path in cleared if path not in UPDATABLE_FIELDS]
        if unknown:
            raise ValueError(f"cannot clear {unknown}; use some of {list(UPDATABLE_FIELDS)}")
        paths = [path for path, value in given.items() if value is not None] + cleared
        if not paths:
            raise ValueError("nothing to update: give at least one field")
        return self.update_job_from(job, paths)

    def update_job_from(self, job: job_pb2.Job | Mapping[str, Any], paths: Sequence[str]) -> job_pb2.Job:
        """UpdateJob as is: `job` carries the id and new values, `paths` the update mask."""
        message = builders.message(job, job_pb2.Job)
        request = job_service_pb2.UpdateJobRequest(job=message, update_mask=FieldMask(paths=list(paths)))
        return self._call(self._jobs.UpdateJob, request, CallKind.WRITE)

    def delete_job(self, job_id: str) -> None:
        self._call(self._jobs.DeleteJob, job_service_pb2.DeleteJobRequest(id=job_id), CallKind.WRITE)

    def trigger_job(
        self,
        job_id: str,
        idempotency_key: str | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        priority: int | None = None,
    ) -> run_pb2.Run:
        """Start a run now, with `parameters` (JSON values) merged over the job's defaults and
        validated against its parameter_schema (InvalidArgumentError naming the path otherwise).

        Every call carries an idempotency key: a fresh random one unless you pass your own, so a
        retry after a lost answer returns the run the first attempt created instead of starting
        a second one. Pass the same key to make your own repeats safe (the server remembers a
        key for 24h; the same key with other parameters is refused, AlreadyExistsError); pass ""
        to send none, in which case the call is never retried. `priority` (0-9) overrides the
        job's for this run."""
        key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        request = job_service_pb2.TriggerJobRequest(id=job_id, idempotency_key=key, priority=priority)
        if parameters:
            request.parameters.update(parameters)
        return self._call(self._jobs.TriggerJob, request, CallKind.WRITE if key else CallKind.UNSAFE)

    def batch_trigger_jobs(
        self,
        job_ids: Sequence[str],
        idempotency_keys: Sequence[str] | None = None,
        *,
        parameters: Sequence[Mapping[str, Any] | None] | None = None,
        priority: int | None = None,
    ) -> list[run_pb2.Run]:
        """Start a run of each job listed (a job may be listed several times), in one call and
        one transaction; the runs come back in the same order. Like trigger_job, every entry
        carries an idempotency key (fresh random ones unless given), so retries are safe.
        `parameters`: one mapping (or None) per job id; one refused entry creates no run."""
        keys = list(idempotency_keys) if idempotency_keys is not None else [uuid.uuid4().hex for _ in job_ids]
        if len(keys) != len(job_ids):
            raise ValueError("give one idempotency key per job id")
        given = list(parameters) if parameters is not None else [None] * len(job_ids)
        if len(given) != len(job_ids):
            raise ValueError("give one parameters mapping (or None) per job id")
        request = job_service_pb2.BatchTriggerJobsRequest(
            requests=[
                job_service_pb2.TriggerJobRequest(id=j, idempotency_key=k, priority=priority)
                for j, k in zip(job_ids, keys, strict=True)
            ]
        )
        for entry, values in zip(request.requests, given, strict=True):
            if values:
                entry.parameters.update(values)
        kind = CallKind.WRITE if all(keys) else CallKind.UNSAFE
        return list(self._call(self._jobs.BatchTriggerJobs, request, kind).runs)

    def list_workers(self, pool: str = "") -> list[job_service_pb2.Worker]:
        """The workers connected now (of one pool, or all), with what they serve."""
        request = job_service_pb2.ListWorkersRequest(pool=pool)
        return list(self._call(self._jobs.ListWorkers, request, CallKind.READ).workers)

    def list_concurrency_keys(
        self, *, prefix: str = "", page_size: int = 0, page_token: str = ""
    ) -> job_service_pb2.ListConcurrencyKeysResponse:
        """Concurrency keys in use: per key, active and waiting runs and the limit."""
        request = job_service_pb2.ListConcurrencyKeysRequest(
            prefix=prefix, page_size=page_size, page_token=page_token
        )
        return self._call(self._jobs.ListConcurrencyKeys, request, CallKind.READ)

    def iter_concurrency_keys(
        self, *, prefix: str = "", page_size: int = 0
    ) -> Iterator[job_service_pb2.ConcurrencyKeyUsage]:
        token = ""
        while True:
            page = self.list_concurrency_keys(prefix=prefix, page_size=page_size, page_token=token)
            yield from page.keys
            token = page.next_page_token
            if not token:
                return

    def get_job_status(self, job_id: str) -> job_service_pb2.JobStatus:
        request = job_service_pb2.GetJobStatusRequest(id=job_id)
        return self._call(self._jobs.GetJobStatus, request, CallKind.READ)

    def pause_job(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.PauseJob, job_service_pb2.PauseJobRequest(id=job_id), CallKind.WRITE)

    def resume_job(self, job_id: str) -> job_pb2.Job:
        return self._call(self._jobs.ResumeJob, job_service_pb2.ResumeJobRequest(id=job_id), CallKind.WRITE)

    def list_skipped_slots(
        self, job_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> job_service_pb2.ListSkippedSlotsResponse:
        request = job_service_pb2.ListSkippedSlotsRequest(
            job_id=job_id, page_size=page_size, page_token=page_token
        )
        return self._call(self._jobs.ListSkippedSlots, request, CallKind.READ)

    def iter_skipped_slots(self, job_id: str, *, page_size: int = 0) -> Iterator[job_service_pb2.SkippedSlot]:
        def fetch(token: str) -> tuple[Sequence[job_service_pb2.SkippedSlot], str]:
            page = self.list_skipped_slots(job_id, page_size=page_size, page_token=token)
            return page.skipped_slots, page.next_page_token

        return _paginate(fetch)

    # Runs

    def list_runs(
        self, *, job_id: str = "", filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> job_service_pb2.ListRunsResponse:
        """One page of runs, newest first: of one job, or of every job when job_id is empty."""
        request = job_service_pb2.ListRunsRequest(
            job_id=job_id, filter=filter, page_size=page_size, page_token=page_token
        )
        return self._call(self._jobs.ListRuns, request, CallKind.READ)

    def iter_runs(self, *, job_id: str = "", filter: str = "", page_size: int = 0) -> Iterator[run_pb2.Run]:
        """Every run (of one job, or all), newest first, matching e.g. filter='state=FAILED'."""

        def fetch(token: str) -> tuple[Sequence[run_pb2.Run], str]:
            page = self.list_runs(job_id=job_id, filter=filter, page_size=page_size, page_token=token)
            return page.runs, page.next_page_token

        return _paginate(fetch)

    def get_run(self, run_id: str) -> run_pb2.Run:
        return self._call(self._jobs.GetRun, job_service_pb2.GetRunRequest(id=run_id), CallKind.READ)

    def cancel_run(self, run_id: str) -> run_pb2.Run:
        return self._call(self._jobs.CancelRun, job_service_pb2.CancelRunRequest(id=run_id), CallKind.WRITE)

    def retry_run(self, run_id: str) -> run_pb2.Run:
        """Start a fresh run of a finished run's job (never retried: a repeat would start two)."""
        return self._call(self._jobs.RetryRun, job_service_pb2.RetryRunRequest(id=run_id), CallKind.UNSAFE)

    def list_run_logs(
        self, run_id: str, *, attempt: int = 0, page_size: int = 0, page_token: str = ""
    ) -> job_service_pb2.ListRunLogsResponse:
        """One page of the run's log lines, oldest first (all attempts, or only `attempt`);
        page_size 1-10000, the server's 1000 when 0. See iter_run_logs() to read them all."""
        request = job_service_pb2.ListRunLogsRequest(
            id=run_id, attempt=attempt, page_size=page_size, page_token=page_token
        )
        return self._call(self._jobs.ListRunLogs, request, CallKind.READ)

    def iter_run_logs(self, run_id: str, *, attempt: int = 0, page_size: int = 0) -> Iterator[run_pb2.LogLine]:
        """Every log line of the run (or of one attempt), oldest first, page by page."""

        def fetch(token: str) -> tuple[Sequence[run_pb2.LogLine], str]:
            page = self.list_run_logs(run_id, attempt=attempt, page_size=page_size, page_token=token)
            return page.lines, page.next_page_token

        return _paginate(fetch)

    def watch_run(self, run_id: str) -> Iterator[job_service_pb2.RunEvent]:
        """The run's events as they happen: first its current state, then every state change
        (event.run) and log line (event.log); the iterator ends when the run has finished.

        If the connection drops mid-watch the client reconnects (with the usual backoff); the
        stream then starts again from the run's current state, so states stay right but log
        lines written while disconnected may be missing (list_run_logs() has them all).
        Closing the iterator early cancels the stream."""
        request = job_service_pb2.WatchRunRequest(id=run_id)
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            token = self._tokens.current()
            stream = self._jobs.WatchRun(request, metadata=_metadata(token))
            try:
                for event in stream:
                    attempt = 0
                    yield event
                return
            except grpc.RpcError as error:
                code = status_code(error)
                if code == grpc.StatusCode.UNAUTHENTICATED and not renewed and self._tokens.renew(token):
                    renewed = True
                elif should_retry(CallKind.READ, code, attempt, self._retry):
                    self._sleep(self._retry.delay(attempt))
                else:
                    raise from_rpc_error(error) from error
            finally:
                stream.cancel()

    # Plumbing

    # Notifications (NotificationService)

    def create_notification_channel(
        self, name: str, url: str, secret: str, *, format: str = "GENERIC", description: str = ""
    ) -> notification_service_pb2.NotificationChannel:
        """A webhook channel; format GENERIC (Taskmesh's JSON event) or SLACK."""
        channel = notification_service_pb2.NotificationChannel(
            name=name, url=url, secret=secret, format=format.upper(), description=description
        )
        request = notification_service_pb2.CreateNotificationChannelRequest(channel=channel)
        return self._call(self._notifications.CreateNotificationChannel, request, CallKind.WRITE)

    def get_notification_channel(self, channel_id: str) -> notification_service_pb2.NotificationChannel:
        request = notification_service_pb2.GetNotificationChannelRequest(id=channel_id)
        return self._call(self._notifications.GetNotificationChannel, request, CallKind.READ)

    def iter_notification_channels(
        self, *, page_size: int = 0
    ) -> Iterator[notification_service_pb2.NotificationChannel]:
        def fetch(token: str) -> tuple[Sequence[notification_service_pb2.NotificationChannel], str]:
            request = notification_service_pb2.ListNotificationChannelsRequest(
                page_size=page_size, page_token=token
            )
            page = self._call(self._notifications.ListNotificationChannels, request, CallKind.READ)
            return page.channels, page.next_page_token

        return _paginate(fetch)

    def update_notification_channel(
        self, channel_id: str, paths: Sequence[str], **values: Any
    ) -> notification_service_pb2.NotificationChannel:
        """Set the fields named in `paths` (name, url, secret, format, disabled, description)."""
        channel = notification_service_pb2.NotificationChannel(id=channel_id, **values)
        request = notification_service_pb2.UpdateNotificationChannelRequest(
            channel=channel, update_mask=FieldMask(paths=list(paths))
        )
        return self._call(self._notifications.UpdateNotificationChannel, request, CallKind.WRITE)

    def delete_notification_channel(self, channel_id: str) -> None:
        request = notification_service_pb2.DeleteNotificationChannelRequest(id=channel_id)
        self._call(self._notifications.DeleteNotificationChannel, request, CallKind.WRITE)

    def test_notification_channel(self, channel_id: str) -> notification_service_pb2.NotificationDelivery:
        """Queue a TEST event for the channel (never retried: a repeat would send two)."""
        request = notification_service_pb2.TestNotificationChannelRequest(id=channel_id)
        return self._call(self._notifications.TestNotificationChannel, request, CallKind.UNSAFE)

    def create_notification_rule(
        self,
        name: str,
        channel_id: str,
        events: Sequence[str],
        *,
        job_id: str = "",
        label_selector: Mapping[str, str] | None = None,
        stuck_after_seconds: float | None = None,
    ) -> notification_service_pb2.NotificationRule:
        """Events (RUN_FAILED, JOB_RECOVERED, SLOT_MISFIRED, SLOT_SKIPPED, RUN_STUCK, RUN_FINISHED)
        of one job, or of the jobs whose labels include label_selector, go to the channel."""
        rule = notification_service_pb2.NotificationRule(
            name=name,
            channel_id=channel_id,
            job_id=job_id,
            label_selector=dict(label_selector or {}),
            events=[e.upper() for e in events],
        )
        if stuck_after_seconds is not None:
            rule.stuck_after.FromTimedelta(timedelta(seconds=stuck_after_seconds))
        request = notification_service_pb2.CreateNotificationRuleRequest(rule=rule)
        return self._call(self._notifications.CreateNotificationRule, request, CallKind.WRITE)

    def get_notification_rule(self, rule_id: str) -> notification_service_pb2.NotificationRule:
        request = notification_service_pb2.GetNotificationRuleRequest(id=rule_id)
        return self._call(self._notifications.GetNotificationRule, request, CallKind.READ)

    def iter_notification_rules(
        self, *, filter: str = "", page_size: int = 0
    ) -> Iterator[notification_service_pb2.NotificationRule]:
        def fetch(token: str) -> tuple[Sequence[notification_service_pb2.NotificationRule], str]:
            request = notification_service_pb2.ListNotificationRulesRequest(
                filter=filter, page_size=page_size, page_token=token
            )
            page = self._call(self._notifications.ListNotificationRules, request, CallKind.READ)
            return page.rules, page.next_page_token

        return _paginate(fetch)

    def update_notification_rule(
        self, rule_id: str, paths: Sequence[str], **values: Any
    ) -> notification_service_pb2.NotificationRule:
        """Set the fields named in `paths` (name, channel_id, job_id, label_selector, events,
        stuck_after, disabled)."""
        rule = notification_service_pb2.NotificationRule(id=rule_id, **values)
        request = notification_service_pb2.UpdateNotificationRuleRequest(
            rule=rule, update_mask=FieldMask(paths=list(paths))
        )
        return self._call(self._notifications.UpdateNotificationRule, request, CallKind.WRITE)

    def delete_notification_rule(self, rule_id: str) -> None:
        request = notification_service_pb2.DeleteNotificationRuleRequest(id=rule_id)
        self._call(self._notifications.DeleteNotificationRule, request, CallKind.WRITE)

    def list_notification_deliveries(
        self, *, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> notification_service_pb2.ListNotificationDeliveriesResponse:
        """One page of deliveries, newest first; filter e.g. 'state=FAILED AND job_id="..."'."""
        request = notification_service_pb2.ListNotificationDeliveriesRequest(
            filter=filter, page_size=page_size, page_token=page_token
        )
        return self._call(self._notifications.ListNotificationDeliveries, request, CallKind.READ)

    def iter_notification_deliveries(
        self, *, filter: str = "", page_size: int = 0
    ) -> Iterator[notification_service_pb2.NotificationDelivery]:
        def fetch(token: str) -> tuple[Sequence[notification_service_pb2.NotificationDelivery], str]:
            page = self.list_notification_deliveries(filter=filter, page_size=page_size, page_token=token)
            return page.deliveries, page.next_page_token

        return _paginate(fetch)

    def get_notification_delivery(self, delivery_id: str) -> notification_service_pb2.NotificationDelivery:
        request = notification_service_pb2.GetNotificationDeliveryRequest(id=delivery_id)
        return self._call(self._notifications.GetNotificationDelivery, request, CallKind.READ)

    def _issue_token(self, credentials: Credentials) -> IssuedToken:
        return _issued(self._login_call(credentials))

    def _login_call(self, credentials: Credentials) -> auth_service_pb2.LoginResponse:
        request = auth_service_pb2.LoginRequest(username=credentials.username, password=credentials.password)
        return self._call(self._auth.Login, request, CallKind.READ, authenticated=False)

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        kind: CallKind,
        *,
        authenticated: bool = True,
    ) -> Resp:
        """One unary call with the token, backoff retries and one renewal of a refused token."""
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            token = self._tokens.current() if authenticated else None
            try:
                return method(request, timeout=self._timeout, metadata=_metadata(token))
            except grpc.RpcError as error:
                code = status_code(error)
                if (
                    code == grpc.StatusCode.UNAUTHENTICATED
                    and authenticated
                    and not renewed
                    and self._tokens.renew(token)
                ):
                    renewed = True
                    attempt -= 1  # the renewal does not use up a retry
                    continue
                if not should_retry(kind, code, attempt, self._retry):
                    raise from_rpc_error(error) from error
            self._sleep(self._retry.delay(attempt))


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _issued(response: auth_service_pb2.LoginResponse) -> IssuedToken:
    return IssuedToken(response.access_token, response.expires_in or None)


def _paginate(fetch: Callable[[str], tuple[Sequence[T], str]]) -> Iterator[T]:
    """Items of every page: fetch(page_token) -> (items, next_page_token), "" ending the walk."""
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return


def _job(
    name: str,
    description: str,
    executor: ExecutorLike | None,
    labels: Mapping[str, str] | None,
    schedule: ScheduleLike | None,
    retry_policy: RetryPolicyLike | None,
    attempt_timeout: builders.DurationLike | None,
    retention: RetentionLike | None = None,
) -> job_pb2.Job:
    job = job_pb2.Job(name=name, description=description, labels=dict(labels or {}))
    if executor is not None:
        job.executor.CopyFrom(builders.message(executor, job_pb2.Executor))
    if schedule is not None:
        job.schedule.CopyFrom(builders.message(schedule, job_pb2.Schedule))
    if retry_policy is not None:
        job.retry_policy.CopyFrom(builders.message(retry_policy, job_pb2.RetryPolicy))
    if attempt_timeout is not None:
        job.attempt_timeout.CopyFrom(builders.duration(attempt_timeout))
    if retention is not None:
        job.retention.CopyFrom(builders.message(retention, retention_pb2.Retention))
    return job


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
