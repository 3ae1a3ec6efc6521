"""Records <-> protobuf messages. JSON columns hold protobuf JSON (json_format) of their message."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh import redaction, schedule_policy
from taskmesh.audit import AuditEvent
from taskmesh.auth import api_keys
from taskmesh.names import Route
from taskmesh.records import (
    ApiKeyRecord,
    JobRecord,
    Json,
    LogEntry,
    RunRecord,
    SkippedSlotRecord,
    UserRecord,
    WorkerRecord,
)
from taskmesh.service_errors import TaskmeshError
from taskmesh.states import RunState, Trigger
from taskmesh.v1 import auth_service_pb2, job_pb2, job_service_pb2, run_pb2

NEXT_FIRE_TIMES = 5

M = TypeVar("M", bound=Message)


def to_json(message: Message) -> Json:
    return json_format.MessageToDict(message)


def from_json(data: Json, message_type: type[M]) -> M:
    return json_format.ParseDict(data, message_type())


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(seconds: float | None) -> Duration | None:
    if seconds is None:
        return None
    value = Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def job_to_proto(job: JobRecord) -> job_pb2.Job:
    message = job_pb2.Job(
        id=job.id,
        name=job.name,
        description=job.description,
        executor=from_json(job.executor, job_pb2.Executor),
        labels=job.labels,
        create_time=timestamp(job.create_time),
        update_time=timestamp(job.update_time),
        attempt_timeout=duration(job.attempt_timeout_seconds),
        start_deadline=duration(job.start_deadline_seconds),
        pool=job.pool,
        paused=job.paused,
        next_fire_times=[_timestamp(t) for t in next_fire_times(job)],
        last_fire_time=timestamp(job.last_fire_at),
    )
    if job.schedule is not None:
        json_format.ParseDict(job.schedule, message.schedule)
    if job.retry_policy is not None:
        json_format.ParseDict(job.retry_policy, message.retry_policy)
    message.priority = job.priority
    if job.concurrency is not None:
        json_format.ParseDict(job.concurrency, message.concurrency)
    if job.rate_limit is not None:
        json_format.ParseDict(job.rate_limit, message.rate_limit)
    if job.parameters is not None:
        message.parameters.update(job.parameters)
    if job.parameter_schema is not None:
        message.parameter_schema.update(job.parameter_schema)
    if job.retention is not None:
        json_format.ParseDict(job.retention, message.retention)
    return message


def public_job(job: JobRecord) -> job_pb2.Job:
    """The job as the API shows it, to every role: secret values redacted (taskmesh.redaction)."""
    message = job_to_proto(job)
    redaction.redact(message.executor)
    return message


def next_fire_times(job: JobRecord) -> list[datetime]:
    """The slots the schedule fires next, starting with the one pending; none when paused."""
    if job.schedule is None or job.paused or job.next_fire_at is None:
        return []
    try:
        schedule = schedule_policy.from_json(job.schedule).with_default_anchor(job.create_time)
        later = schedule_policy.next_fire_times(schedule, job.next_fire_at, NEXT_FIRE_TIMES - 1)
    except (TaskmeshError, ValueError):  # stored by an older release, unreadable now: show what we know
        later = []
    return [job.next_fire_at, *later]


def schedule_health(job: JobRecord) -> job_service_pb2.ScheduleHealth | None:
    """Scheduled jobs only."""
    if job.schedule is None:
        return None
    times = next_fire_times(job)
    return job_service_pb2.ScheduleHealth(
        paused=job.paused,
        next_fire_time=_timestamp(times[0]) if times else None,
        last_fire_time=timestamp(job.last_fire_at),
        last_fire_lag=duration(job.last_fire_lag_seconds),
        misfired_slots=job.misfired_slots,
        skipped_slots=job.skipped_slots,
    )


def skipped_slot_to_proto(slot: SkippedSlotRecord) -> job_service_pb2.SkippedSlot:
    return job_service_pb2.SkippedSlot(
        slot_time=timestamp(slot.slot_time),
        reason=slot.reason.value,
        record_time=timestamp(slot.record_time),
        active_run_id=slot.active_run_id or "",
    )


def run_to_proto(run: RunRecord) -> run_pb2.Run:
    message = run_pb2.Run(
        id=run.id,
        job_id=run.job_id,
        job_name=run.job_name,
        state=run.state.value,
        attempt=run.attempt,
        trigger=run.trigger.value,
        queue_time=timestamp(run.queue_time),
        start_time=timestamp(run.start_time),
        finish_time=timestamp(run.finish_time),
        worker_id=run.worker_id or "",
        slot_time=timestamp(run.slot_time),
        retry_time=timestamp(run.retry_at),
        idempotency_key=run.idempotency_key or "",
        retried_from_run_id=run.retried_from or "",
        cancel_time=timestamp(run.cancel_time),
        version=run.version,
        pool=run.pool,
        priority=run.priority,
        concurrency_key=run.concurrency_key or "",
        rate_limit_key=run.rate_limit_key or "",
    )
    if run.result:
        json_format.ParseDict(run.result, message.result)
    if run.error:
        json_format.ParseDict(run.error, message.error)
    for attempt in run.attempts:
        message.attempts.append(_attempt_to_proto(attempt))
    if run.parameters:
        message.parameters.update(run.parameters)
    if run.output is not None:
        _set_value(message.output, run.output)
    return message


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """A JSON value into a google.protobuf.Value."""
    json_format.ParseDict(value, target)


def _attempt_to_proto(attempt: Json) -> run_pb2.Attempt:
    """An entry of runs.attempts (written by RECORD_OUTCOMES in taskmesh.db.runs)."""
    message = run_pb2.Attempt(
        attempt=int(attempt["attempt"]),
        worker_id=attempt.get("worker_id") or "",
        state=attempt["state"],
        start_time=_parse_time(attempt.get("start_time")),
        finish_time=_parse_time(attempt.get("finish_time")),
    )
    if attempt.get("result"):
        json_format.ParseDict(attempt["result"], message.result)
    if attempt.get("error"):
        json_format.ParseDict(attempt["error"], message.error)
    if attempt.get("rendered"):
        json_format.ParseDict(attempt["rendered"], message.rendered_request)
    if "output" in attempt:
        _set_value(message.output, attempt["output"])
    return message


def _parse_time(value: str | None) -> Timestamp | None:
    """PostgreSQL's JSON rendering of timestamptz ("2026-11-26T23:02:05.772892+00:00")."""
    return timestamp(datetime.fromisoformat(value)) if value else None


def log_line_to_proto(entry: LogEntry) -> run_pb2.LogLine:
    return run_pb2.LogLine(attempt=entry.ref.attempt, time=timestamp(entry.time), text=entry.text)


def run_state_name(value: int) -> RunState:
    return RunState(run_pb2.Run.State.Name(value))


def trigger_name(value: int) -> Trigger:
    return Trigger(run_pb2.Run.Trigger.Name(value))


def user_to_proto(user: UserRecord) -> auth_service_pb2.User:
    return auth_service_pb2.User(
        username=user.username, role=user.role.value, create_time=timestamp(user.create_time)
    )


def job_route(job: JobRecord, pool: str = "") -> Route:
    """Where the job's runs are queued (`pool`: the run's own, when known)."""
    kind = min(job.executor) if job.executor else None
    task = job.executor.get("python", {}).get("task") if kind == "python" else None
    return Route(pool or job.pool, kind, task)


def worker_to_proto(worker: WorkerRecord) -> job_service_pb2.Worker:
    return job_service_pb2.Worker(
        worker_id=worker.worker_id,
        pools=worker.profile.pools,
        executors=worker.profile.executors,
        tasks=worker.profile.tasks,
        slots=worker.profile.slots,
        busy_slots=worker.busy_slots,
        connect_time=timestamp(worker.connect_time),
        consuming=worker.profile.consuming,
    )


def service_account_to_proto(account: UserRecord) -> auth_service_pb2.ServiceAccount:
    return auth_service_pb2.ServiceAccount(
        name=account.username,
        role=account.role.value,
        description=account.description,
        create_time=timestamp(account.create_time),
        created_by=account.created_by or "",
    )


def api_key_to_proto(key: ApiKeyRecord) -> auth_service_pb2.ApiKey:
    return auth_service_pb2.ApiKey(
        id=key.key_id,
        service_account=key.service_account,
        name=key.name,
        create_time=timestamp(key.create_time),
        expire_time=timestamp(key.expire_time),
        last_used_time=timestamp(key.last_used_time),
        created_by=key.created_by,
        display=api_keys.display(key.key_id),
    )


def audit_event_to_proto(event: AuditEvent) -> auth_service_pb2.AuditEvent:
    message = auth_service_pb2.AuditEvent(
        id=event.id,
        time=timestamp(event.time),
        actor=event.actor,
        role=event.role,
        api_key_id=event.api_key_id,
        method=event.method,
        resource=event.resource,
        request_id=event.request_id,
        outcome=event.outcome,
    )
    if event.detail is not None:
        message.detail.update(event.detail)
    return message
