"""Thin gRPC adapters: request -> validated values -> domain call -> response.

Errors are raised as taskmesh errors; the guard interceptor turns them into status codes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp

from api_server import flow_validation, validation
from api_server.accounts import Accounts
from api_server.jobs import JobPolicies, Jobs, NewSchedule
from api_server.parameters import TriggerInput
from api_server.runs import Runs
from api_server.service_accounts import ServiceAccounts
from api_server.watch import RunWatcher
from api_server.workers import WorkerRoster
from taskmesh import listing, redaction, schedule_policy
from taskmesh.audit import AuditQuery
from taskmesh.convert import (
    api_key_to_proto,
    audit_event_to_proto,
    job_route,
    log_line_to_proto,
    public_job,
    run_to_proto,
    schedule_health,
    service_account_to_proto,
    skipped_slot_to_proto,
    to_json,
    user_to_proto,
    worker_to_proto,
)
from taskmesh.flow_policy import DEFAULT_PRIORITY
from taskmesh.records import FlowChanges, FlowSettings, JobChanges, Replacement, RunRecord
from taskmesh.rpc.guard import current_audit, current_principal
from taskmesh.rpc.peers import IPNetwork, client_address
from taskmesh.service_errors import InvalidArgument
from taskmesh.states import RunState, Trigger
from taskmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    run_pb2,
)

Context = Any  # grpc.aio.ServicerContext

JOB_FILTER_FIELDS = {"name": ("=", "!=", ":"), "state": ("=", "!="), "labels.*": ("=", "!=", ":")}
RUN_FILTER_FIELDS = {"state": ("=", "!="), "trigger": ("=", "!=")}
FILTER_VALUES = {
    "state": frozenset(s.value for s in RunState),
    "trigger": frozenset(t.value for t in Trigger),
}
MAX_BATCH_TRIGGERS = 1000
DEFAULT_PREVIEW_FIRE_TIMES, MAX_PREVIEW_FIRE_TIMES = 5, 100
UPDATABLE_PATHS = (
    "name",
    "description",
    "executor",
    "labels",
    "schedule",
    "retry_policy",
    "attempt_timeout",
    "parameters",
    "parameter_schema",
    "retention",
    "pool",
    "start_deadline",
    "priority",
    "concurrency",
    "rate_limit",
)


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, jobs: Jobs, runs: Runs, watcher: RunWatcher, workers: WorkerRoster) -> None:
        self._jobs = jobs
        self._runs = runs
        self._watcher = watcher
        self._workers = workers

    def _run(self, run: RunRecord) -> run_pb2.Run:
        message = run_to_proto(run)
        message.waiting_reason = self._workers.capacity.reason(run)
        return message

    async def CreateJob(self, request: job_service_pb2.CreateJobRequest, context: Context) -> job_pb2.Job:
        if not request.HasField("job"):
            raise InvalidArgument("job", "is required")
        job = request.job
        name, description = validation.job_name(job.name), validation.description(job.description)
        executor = to_json(redaction.restore(validation.executor(job.executor), None))
        labels = validation.labels(dict(job.labels))
        validation.job_size(job)
        record = await self._jobs.create(
            name=name,
            description=description,
            executor=executor,
            labels=labels,
            policies=JobPolicies(
                schedule=_new_schedule(job) if job.HasField("schedule") else None,
                retry_policy=to_json(validation.retry_policy(job.retry_policy))
                if job.HasField("retry_policy")
                else None,
                attempt_timeout_seconds=validation.attempt_timeout(job.attempt_timeout)
                if job.HasField("attempt_timeout")
                else None,
                parameters=validation.job_parameters(job),
                parameter_schema=validation.parameter_schema(job),
                retention=to_json(validation.retention(job.retention)) if job.HasField("retention") else None,
                pool=validation.pool(job.pool),
                start_deadline_seconds=validation.start_deadline(job.start_deadline)
                if job.HasField("start_deadline")
                else None,
                flow=_flow_settings(job),
            ),
            audit=current_audit(),
        )
        return public_job(record)

    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Context) -> job_pb2.Job:
        return public_job(await self._jobs.get(validation.require_id(request.id)))

    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        limit = listing.page_size(request.page_size)
        conditions = listing.parse_filter(request.filter, JOB_FILTER_FIELDS, FILTER_VALUES)
        page = listing.decode_page_token(request.page_token)
        jobs = await self._jobs.list_jobs(conditions, page, limit + 1)
        messages = [public_job(j) for j in jobs]
        count = listing.page_length((m.ByteSize() for m in messages), limit)
        token = (
            listing.encode_page_token(jobs[count - 1].create_time, jobs[count - 1].id) if len(jobs) > count else ""
        )
        return job_service_pb2.ListJobsResponse(jobs=messages[:count], next_page_token=token)

    async def UpdateJob(self, request: job_service_pb2.UpdateJobRequest, context: Context) -> job_pb2.Job:
        if not request.HasField("job"):
            raise InvalidArgument("job", "is required")
        job_id = validation.require_id(request.job.id, "job.id")
        paths = _update_paths(request.job, list(request.update_mask.paths))
        changes = _job_changes(request.job, paths)
        validation.job_size(request.job)
        schedule = _new_schedule(request.job) if "schedule" in paths else None
        return public_job(await self._jobs.update(job_id, changes, current_audit(), schedule))

    async def DeleteJob(self, request: job_service_pb2.DeleteJobRequest, context: Context) -> Empty:
        await self._jobs.delete(validation.require_id(request.id), current_audit())
        return Empty()

    async def TriggerJob(self, request: job_service_pb2.TriggerJobRequest, context: Context) -> run_pb2.Run:
        key = validation.idempotency_key(request.idempotency_key)
        given = validation.trigger_parameters(request.parameters, request.HasField("parameters"))
        priority = _trigger_priority(request, "priority")
        run = await self._runs.trigger(validation.require_id(request.id), key, current_audit(), given, priority)
        return (await self._runs_out([run]))[0]

    async def BatchTriggerJobs(
        self, request: job_service_pb2.BatchTriggerJobsRequest, context: Context
    ) -> job_service_pb2.BatchTriggerJobsResponse:
        if not 1 <= len(request.requests) <= MAX_BATCH_TRIGGERS:
            raise InvalidArgument("requests", f"must hold 1 to {MAX_BATCH_TRIGGERS} triggers")
        triggers = [
            TriggerInput(
                validation.require_id(r.id, f"requests[{i}].id"),
                validation.idempotency_key(r.idempotency_key, f"requests[{i}].idempotency_key"),
                validation.trigger_parameters(r.parameters, r.HasField("parameters"), f"requests[{i}].parameters"),
                f"requests[{i}].parameters",
                _trigger_priority(r, f"requests[{i}].priority"),
            )
            for i, r in enumerate(request.requests)
        ]
        runs = await self._runs.trigger_many(triggers, current_audit())
        return job_service_pb2.BatchTriggerJobsResponse(runs=await self._runs_out(runs))

    async def GetJobStatus(
        self, request: job_service_pb2.GetJobStatusRequest, context: Context
    ) -> job_service_pb2.JobStatus:
        view = await self._jobs.status(validation.require_id(request.id))
        status = job_service_pb2.JobStatus(job_id=view.job_id, job_name=view.job_name)
        if view.last_run is not None:
            status.state = view.last_run.state
            status.last_run.CopyFrom(view.last_run)
            if view.last_run.state == run_pb2.Run.QUEUED:
                status.last_run.waiting_reason = await self._flow_reason(view.last_run.id)
        health = schedule_health(view.job) if view.job is not None else None
        if health is not None:
            status.schedule_health.CopyFrom(health)
        if view.last_run is not None and view.last_run.state == run_pb2.Run.QUEUED and view.job is not None:
            capacity = self._workers.capacity.reason_for(job_route(view.job, view.last_run.pool))
            status.waiting_reason = capacity or status.last_run.waiting_reason
            status.last_run.waiting_reason = status.waiting_reason
        return status

    async def _flow_reason(self, run_id: str) -> str:
        """Why a QUEUED run waits for flow control: admission, else the in-flight bound ("" if neither)."""
        reasons = await self._runs.waiting_reasons([run_id])
        if run_id not in reasons:
            reasons = await self._runs.dispatch_reasons([run_id])
        return reasons.get(run_id, "")

    async def ListWorkers(
        self, request: job_service_pb2.ListWorkersRequest, context: Context
    ) -> job_service_pb2.ListWorkersResponse:
        pool = validation.pool(request.pool, "pool") if request.pool else ""
        workers = await self._workers.list_workers(pool)
        return job_service_pb2.ListWorkersResponse(workers=[worker_to_proto(w) for w in workers])

    async def ListRuns(
        self, request: job_service_pb2.ListRunsRequest, context: Context
    ) -> job_service_pb2.ListRunsResponse:
        job_id = validation.require_id(request.job_id, "job_id") if request.job_id else None
        limit = listing.page_size(request.page_size)
        conditions = listing.parse_filter(request.filter, RUN_FILTER_FIELDS, FILTER_VALUES)
        page = listing.decode_page_token(request.page_token)
        runs = await self._runs.list_runs(job_id, conditions, page, limit + 1)
        messages = await self._runs_out(runs)
        count = listing.page_length((m.ByteSize() for m in messages), limit)
        token = (
            listing.encode_page_token(runs[count - 1].queue_time, runs[count - 1].id) if len(runs) > count else ""
        )
        return job_service_pb2.ListRunsResponse(runs=messages[:count], next_page_token=token)

    async def GetRun(self, request: job_service_pb2.GetRunRequest, context: Context) -> run_pb2.Run:
        run = await self._runs.get(validation.require_id(request.id))
        (message,) = await self._runs_out([run])
        if run.state == RunState.QUEUED and not run.awaiting_admission and not message.waiting_reason:
            message.waiting_reason = (await self._runs.dispatch_reasons([run.id])).get(run.id, "")
        return message

    async def _runs_out(self, runs: Sequence[RunRecord]) -> list[run_pb2.Run]:
        """The runs as the API shows them; those awaiting admission say why (flow control)."""
        messages = [self._run(run) for run in runs]
        waiting = [run.id for run in runs if run.awaiting_admission and run.state == RunState.QUEUED]
        if waiting:
            reasons = await self._runs.waiting_reasons(waiting)
            for message in messages:
                if message.id in reasons:
                    message.waiting_reason = reasons[message.id]
        return messages

    async def ListConcurrencyKeys(
        self, request: job_service_pb2.ListConcurrencyKeysRequest, context: Context
    ) -> job_service_pb2.ListConcurrencyKeysResponse:
        limit = listing.page_size(request.page_size, default=100, maximum=1000)
        after = listing.decode_key_token(request.page_token) if request.page_token else ""
        keys = await self._runs.concurrency_keys(request.prefix, after, limit + 1)
        token = listing.encode_key_token(keys[limit - 1].key) if len(keys) > limit else ""
        return job_service_pb2.ListConcurrencyKeysResponse(
            keys=[
                job_service_pb2.ConcurrencyKeyUsage(key=k.key, active=k.active, waiting=k.waiting, limit=k.limit)
                for k in keys[:limit]
            ],
            next_page_token=token,
        )

    async def PauseJob(self, request: job_service_pb2.PauseJobRequest, context: Context) -> job_pb2.Job:
        return public_job(await self._jobs.pause(validation.require_id(request.id), current_audit()))

    async def ResumeJob(self, request: job_service_pb2.ResumeJobRequest, context: Context) -> job_pb2.Job:
        return public_job(await self._jobs.resume(validation.require_id(request.id), current_audit()))

    async def ListSkippedSlots(
        self, request: job_service_pb2.ListSkippedSlotsRequest, context: Context
    ) -> job_service_pb2.ListSkippedSlotsResponse:
        job_id = validation.require_id(request.job_id, "job_id")
        limit = listing.page_size(request.page_size)
        page = listing.decode_page_token(request.page_token)
        if page is not None and page.after_id != job_id:
            raise InvalidArgument("page_token", "belongs to another job's list")
        slots = await self._jobs.list_skipped(job_id, page, limit + 1)
        token = ""
        if len(slots) > limit:
            slots = slots[:limit]
            token = listing.encode_page_token(slots[-1].slot_time, job_id)
        return job_service_pb2.ListSkippedSlotsResponse(
            skipped_slots=[skipped_slot_to_proto(s) for s in slots], next_page_token=token
        )

    async def CancelRun(self, request: job_service_pb2.CancelRunRequest, context: Context) -> run_pb2.Run:
        return run_to_proto(await self._runs.cancel(validation.require_id(request.id), current_audit()))

    async def RetryRun(self, request: job_service_pb2.RetryRunRequest, context: Context) -> run_pb2.Run:
        return run_to_proto(await self._runs.retry(validation.require_id(request.id), current_audit()))

    async def WatchRun(
        self, request: job_service_pb2.WatchRunRequest, context: Context
    ) -> AsyncIterator[job_service_pb2.RunEvent]:
        async for event in self._watcher.watch(validation.require_id(request.id)):
            yield event

    async def ListRunLogs(
        self, request: job_service_pb2.ListRunLogsRequest, context: Context
    ) -> job_service_pb2.ListRunLogsResponse:
        if request.attempt < 0:
            raise InvalidArgument("attempt", "must be 0 (all attempts) or an attempt number")
        limit = listing.page_size(request.page_size, default=1000, maximum=10_000)
        run_id = validation.require_id(request.id)
        after_id = listing.decode_offset_token(request.page_token, scope=f"{run_id}/{request.attempt}")
        logs = await self._runs.logs(run_id, request.attempt or None, after_id, limit)
        return job_service_pb2.ListRunLogsResponse(
            lines=[log_line_to_proto(entry) for entry in logs.lines],
            truncated_attempts=logs.truncated_attempts,
            next_page_token=(
                listing.encode_offset_token(logs.next_after_id, scope=f"{run_id}/{request.attempt}")
                if logs.next_after_id
                else ""
            ),
        )

    async def PreviewSchedule(
        self, request: job_service_pb2.PreviewScheduleRequest, context: Context
    ) -> job_service_pb2.PreviewScheduleResponse:
        if not request.HasField("schedule"):
            raise InvalidArgument("schedule", "is required")
        if not 0 <= request.count <= MAX_PREVIEW_FIRE_TIMES:
            raise InvalidArgument("count", f"must be between 1 and {MAX_PREVIEW_FIRE_TIMES} (0: 5)")
        now = datetime.now(UTC)
        # An interval without anchor counts from now, as it would from a job created now.
        schedule = validation.schedule(request.schedule, now, "schedule").with_default_anchor(now)
        times = schedule_policy.next_fire_times(schedule, now, request.count or DEFAULT_PREVIEW_FIRE_TIMES)
        return job_service_pb2.PreviewScheduleResponse(fire_times=[_timestamp(t) for t in times])


def _timestamp(value: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(value)
    return message


def _update_paths(job: job_pb2.Job, paths: list[str]) -> list[str]:
    """The fields an update names; with no mask, every field the request populates (AIP-134)."""
    if not paths:
        paths = [p for p in UPDATABLE_PATHS if _populated(job, p)]
        if not paths:
            raise InvalidArgument("job", "names no field to update")
    unknown = [p for p in paths if p not in UPDATABLE_PATHS]
    if unknown:
        raise InvalidArgument("update_mask", f"unknown or read-only paths {unknown}; use {list(UPDATABLE_PATHS)}")
    return paths


def _job_changes(job: job_pb2.Job, paths: list[str]) -> JobChanges:
    """The changes an update names, except the schedule (see _new_schedule). A path in the
    mask whose field is unset clears it (retry_policy, attempt_timeout)."""
    paths = _update_paths(job, paths)
    retry_policy = attempt_timeout = retention = start_deadline = None
    if "retry_policy" in paths:
        retry_policy = Replacement(
            to_json(validation.retry_policy(job.retry_policy)) if job.HasField("retry_policy") else None
        )
    if "attempt_timeout" in paths:
        attempt_timeout = Replacement(
            validation.attempt_timeout(job.attempt_timeout) if job.HasField("attempt_timeout") else None
        )
    if "start_deadline" in paths:
        start_deadline = Replacement(
            validation.start_deadline(job.start_deadline) if job.HasField("start_deadline") else None
        )
    parameters = parameter_schema = None
    if "parameters" in paths:
        parameters = Replacement(validation.job_parameters(job))
    if "parameter_schema" in paths:
        parameter_schema = Replacement(validation.parameter_schema(job))
    if "retention" in paths:
        retention = Replacement(
            to_json(validation.retention(job.retention)) if job.HasField("retention") else None
        )
    flow = _flow_changes(job, paths)
    return JobChanges(
        parameters=parameters,
        parameter_schema=parameter_schema,
        pool=validation.pool(job.pool) if "pool" in paths else None,
        start_deadline_seconds=start_deadline,
        priority=flow.priority,
        concurrency=flow.concurrency,
        rate_limit=flow.rate_limit,
        name=validation.job_name(job.name) if "name" in paths else None,
        description=validation.description(job.description) if "description" in paths else None,
        executor=to_json(validation.executor(job.executor)) if "executor" in paths else None,
        labels=validation.labels(dict(job.labels)) if "labels" in paths else None,
        retry_policy=retry_policy,
        attempt_timeout_seconds=attempt_timeout,
        retention=retention,
    )


def _flow_settings(job: job_pb2.Job) -> FlowSettings:
    """CreateJob: the job's flow-control fields, validated."""
    return FlowSettings(
        priority=flow_validation.priority(job.priority) if job.HasField("priority") else None,
        concurrency=flow_validation.concurrency(job.concurrency) if job.HasField("concurrency") else None,
        rate_limit=flow_validation.rate_limit(job.rate_limit) if job.HasField("rate_limit") else None,
    )


def _flow_changes(job: job_pb2.Job, paths: list[str]) -> FlowChanges:
    """UpdateJob: a path in the mask whose field is unset clears it (priority goes back to 5)."""
    settings = _flow_settings(job)
    return FlowChanges(
        priority=(settings.priority if settings.priority is not None else DEFAULT_PRIORITY)
        if "priority" in paths
        else None,
        concurrency=Replacement(settings.concurrency) if "concurrency" in paths else None,
        rate_limit=Replacement(settings.rate_limit) if "rate_limit" in paths else None,
    )


def _trigger_priority(request: job_service_pb2.TriggerJobRequest, field: str) -> int | None:
    return flow_validation.priority(request.priority, field) if request.HasField("priority") else None


def _new_schedule(job: job_pb2.Job) -> NewSchedule:
    """The job's schedule, validated; an unset schedule removes it (manual runs only)."""
    if not job.HasField("schedule"):
        return NewSchedule(None, None)
    schedule = validation.schedule(job.schedule, datetime.now(UTC))
    return NewSchedule(schedule, to_json(job.schedule))


def _populated(job: job_pb2.Job, path: str) -> bool:
    if path in (
        "executor",
        "schedule",
        "retry_policy",
        "attempt_timeout",
        "parameters",
        "parameter_schema",
        "retention",
        "start_deadline",
        "priority",
        "concurrency",
        "rate_limit",
    ):
        return job.HasField(path)
    if path == "labels":
        return len(job.labels) > 0
    return bool(getattr(job, path))


def _audit_scope(request: auth_service_pb2.ListAuditEventsRequest) -> str:
    """A page token is valid only for the filters it was made with."""
    copy = auth_service_pb2.ListAuditEventsRequest()
    copy.CopyFrom(request)
    copy.ClearField("page_token")
    copy.ClearField("page_size")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, accounts: Accounts, service_accounts: ServiceAccounts, trusted_proxies: Sequence[IPNetwork]
    ) -> None:
        self._accounts = accounts
        self._service_accounts = service_accounts
        self._trusted_proxies = trusted_proxies

    async def Login(
        self, request: auth_service_pb2.LoginRequest, context: Context
    ) -> auth_service_pb2.LoginResponse:
        if not request.username:
            raise InvalidArgument("username", "is required")
        if not request.password:
            raise InvalidArgument("password", "is required")
        issued = await self._accounts.login(request.username, request.password, self._client_address(context))
        return auth_service_pb2.LoginResponse(
            access_token=issued.token, token_type="Bearer", expires_in=issued.expires_in
        )

    async def CreateUser(
        self, request: auth_service_pb2.CreateUserRequest, context: Context
    ) -> auth_service_pb2.User:
        user = await self._accounts.create_user(
            validation.username(request.username),
            validation.new_password(request.password),
            validation.role(request.role),
            current_audit(),
        )
        return user_to_proto(user)

    async def ListUsers(
        self, request: auth_service_pb2.ListUsersRequest, context: Context
    ) -> auth_service_pb2.ListUsersResponse:
        users = await self._accounts.list_users()
        return auth_service_pb2.ListUsersResponse(users=[user_to_proto(u) for u in users])

    async def UpdateUser(
        self, request: auth_service_pb2.UpdateUserRequest, context: Context
    ) -> auth_service_pb2.User:
        role = validation.role(request.role) if request.role != auth_service_pb2.ROLE_UNSPECIFIED else None
        password = validation.new_password(request.password) if request.password else None
        if role is None and password is None:
            raise InvalidArgument("role", "give a new role or a new password (or both)")
        user = await self._accounts.update_user(
            validation.username(request.username), role, password, current_principal(), current_audit()
        )
        return user_to_proto(user)

    async def DeleteUser(self, request: auth_service_pb2.DeleteUserRequest, context: Context) -> Empty:
        await self._accounts.delete_user(
            validation.username(request.username), current_principal(), current_audit()
        )
        return Empty()

    async def CreateServiceAccount(
        self, request: auth_service_pb2.CreateServiceAccountRequest, context: Context
    ) -> auth_service_pb2.ServiceAccount:
        account = await self._service_accounts.create(
            validation.username(request.name, "name"),
            validation.role(request.role),
            validation.description(request.description, "description"),
            current_principal(),
            current_audit(),
        )
        return service_account_to_proto(account)

    async def ListServiceAccounts(
        self, request: auth_service_pb2.ListServiceAccountsRequest, context: Context
    ) -> auth_service_pb2.ListServiceAccountsResponse:
        accounts = await self._service_accounts.all()
        return auth_service_pb2.ListServiceAccountsResponse(
            service_accounts=[service_account_to_proto(a) for a in accounts]
        )

    async def DeleteServiceAccount(
        self, request: auth_service_pb2.DeleteServiceAccountRequest, context: Context
    ) -> Empty:
        await self._service_accounts.delete(validation.username(request.name, "name"), current_audit())
        return Empty()

    async def CreateApiKey(
        self, request: auth_service_pb2.CreateApiKeyRequest, context: Context
    ) -> auth_service_pb2.CreateApiKeyResponse:
        ttl = validation.key_ttl(request.ttl) if request.HasField("ttl") else None
        created = await self._service_accounts.create_key(
            validation.username(request.service_account, "service_account"),
            validation.key_name(request.name),
            ttl,
            current_principal(),
            current_audit(),
        )
        return auth_service_pb2.CreateApiKeyResponse(api_key=api_key_to_proto(created.record), key=created.key)

    async def ListApiKeys(
        self, request: auth_service_pb2.ListApiKeysRequest, context: Context
    ) -> auth_service_pb2.ListApiKeysResponse:
        keys = await self._service_accounts.keys(validation.username(request.service_account, "service_account"))
        return auth_service_pb2.ListApiKeysResponse(api_keys=[api_key_to_proto(k) for k in keys])

    async def RevokeApiKey(self, request: auth_service_pb2.RevokeApiKeyRequest, context: Context) -> Empty:
        await self._service_accounts.revoke_key(
            validation.username(request.service_account, "service_account"),
            validation.key_id(request.key_id),
            current_audit(),
        )
        return Empty()

    async def ListAuditEvents(
        self, request: auth_service_pb2.ListAuditEventsRequest, context: Context
    ) -> auth_service_pb2.ListAuditEventsResponse:
        limit = listing.page_size(request.page_size, default=100, maximum=1000)
        scope = _audit_scope(request)
        before = listing.decode_offset_token(request.page_token, scope=scope) or None
        query = AuditQuery(
            actor=request.actor or None,
            resource=request.resource or None,
            method=request.method or None,
            start_time=request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None,
            end_time=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
            before_id=before,
            limit=limit + 1,
        )
        events = await self._service_accounts.audit_events(query)
        token = listing.encode_offset_token(events[limit - 1].id, scope=scope) if len(events) > limit else ""
        return auth_service_pb2.ListAuditEventsResponse(
            events=[audit_event_to_proto(e) for e in events[:limit]], next_page_token=token
        )

    def _client_address(self, context: Context) -> str:
        forwarded = dict(context.invocation_metadata() or ()).get("x-forwarded-for")
        return client_address(
            context.peer(), forwarded if isinstance(forwarded, str) else None, self._trusted_proxies
        )
