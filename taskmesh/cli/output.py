"""How results look: aligned tables and key/value blocks for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.v1 import auth_service_pb2, job_pb2, job_service_pb2, run_pb2, secret_service_pb2

NONE = "-"


def to_dict(message: Message) -> dict[str, Any]:
    """The protobuf JSON form (as the REST API answers), zero values included."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _compact(message: Message) -> str:
    """A Struct or Value as one line of JSON (integral numbers without ".0")."""
    return json.dumps(_integral(json_format.MessageToDict(message)), separators=(", ", ": "))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    body = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]
    lines = []
    for row in body:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    """A "key: value" block, keys aligned."""
    items = [(k, v) for k, v in pairs if v not in ("", NONE)]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in items)


# Scalars


def time_text(value: Timestamp) -> str:
    if value.seconds == 0 and value.nanos == 0:
        return NONE
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_text(value: Timestamp) -> str:
    if value.seconds == 0 and value.nanos == 0:
        return "--:--:--"
    return value.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S")


def seconds_text(seconds: float) -> str:
    """1.5 -> "1.5s", 90 -> "1m30s", 7200 -> "2h"."""
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


def duration_text(value: Duration) -> str:
    return seconds_text(value.ToTimedelta().total_seconds())


def _has(message: Message, field: str) -> bool:
    return message.HasField(field)


def executor_text(executor: job_pb2.Executor) -> str:
    kind = executor.WhichOneof("kind")
    if kind == "sleep":
        return f"sleep {seconds_text(executor.sleep.seconds)}"
    if kind == "http":
        return f"http {executor.http.method or 'GET'} {executor.http.url}"
    if kind == "shell":
        return "shell " + " ".join(executor.shell.argv)
    if kind == "python":
        return f"python {executor.python.task}"
    return kind or NONE


def schedule_text(job: job_pb2.Job) -> str:
    if not _has(job, "schedule"):
        return "manual"
    schedule = job.schedule
    kind = schedule.WhichOneof("kind")
    if kind == "cron":
        text = f"cron {schedule.cron.expression}" + (
            f" ({schedule.cron.timezone})" if schedule.cron.timezone else ""
        )
    elif kind == "interval":
        text = f"every {duration_text(schedule.interval.every)}"
    elif kind == "once":
        text = f"once at {time_text(schedule.once.at)}"
    else:
        text = "manual"
    return text + (" (paused)" if job.paused else "")


def _policy(enum: Any, value: int) -> str:
    """A schedule policy as its flag spells it (fire-once, skip, forbid...); "" when unset."""
    return str(enum.Name(value)).lower().replace("_", "-") if value else ""


def labels_text(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


def state_name(state: int) -> str:
    return run_pb2.Run.State.Name(state) if state else NONE


def run_took(run: run_pb2.Run) -> str:
    if not (_has(run, "start_time") and _has(run, "finish_time")):
        return NONE
    return seconds_text((run.finish_time.ToDatetime() - run.start_time.ToDatetime()).total_seconds())


def result_text(result: run_pb2.RunResult) -> str:
    kind = result.WhichOneof("kind")
    if kind == "http":
        return f"HTTP {result.http.status_code}: {result.http.body_excerpt[:80]!r}"
    if kind == "shell":
        return f"exit code {result.shell.exit_code}: {result.shell.output_excerpt[-80:]!r}"
    if kind == "python":
        if result.python.exception_type:
            return f"raised {result.python.exception_type}"
        return f"returned {result.python.return_excerpt[:200] or 'nothing'}"
    return NONE


def error_text(error: run_pb2.RunError) -> str:
    if not error.kind and not error.message:
        return NONE
    kind = run_pb2.RunError.Kind.Name(error.kind) if error.kind else "ERROR"
    return f"{kind}: {error.message}" + ("" if error.retryable else " (not retryable)")


# Resources


def jobs_table(jobs: Iterable[job_pb2.Job]) -> str:
    rows = [
        (
            j.id,
            j.name,
            executor_text(j.executor),
            schedule_text(j),
            labels_text(j.labels),
            time_text(j.create_time),
        )
        for j in jobs
    ]
    return table(("ID", "NAME", "EXECUTOR", "SCHEDULE", "LABELS", "CREATED"), rows)


def job_fields(job: job_pb2.Job) -> str:
    retry = job.retry_policy
    return fields(
        [
            ("id", job.id),
            ("name", job.name),
            ("description", job.description),
            ("executor", executor_text(job.executor)),
            ("labels", labels_text(job.labels)),
            ("schedule", schedule_text(job)),
            ("misfire policy", _policy(job.schedule.MisfirePolicy, job.schedule.misfire_policy)),
            ("overlap policy", _policy(job.schedule.OverlapPolicy, job.schedule.overlap_policy)),
            ("next fires", ", ".join(time_text(t) for t in job.next_fire_times)),
            ("last fired", time_text(job.last_fire_time)),
            ("max attempts", str(retry.max_attempts) if retry.max_attempts else ""),
            ("attempt timeout", duration_text(job.attempt_timeout) if _has(job, "attempt_timeout") else ""),
            ("retention", _retention_text(job)),
            ("pool", job.pool),
            ("start deadline", duration_text(job.start_deadline) if _has(job, "start_deadline") else ""),
            ("priority", str(job.priority)),
            ("concurrency", concurrency_text(job) if _has(job, "concurrency") else ""),
            ("rate limit", rate_limit_text(job) if _has(job, "rate_limit") else ""),
            ("created", time_text(job.create_time)),
            ("updated", time_text(job.update_time)),
        ]
    )


def concurrency_text(job: job_pb2.Job) -> str:
    on_limit = job_pb2.ConcurrencyLimit.OnLimit.Name(job.concurrency.on_limit or job_pb2.ConcurrencyLimit.QUEUE)
    return f"{job.concurrency.limit} per key {job.concurrency.key or '(the job)'}, {on_limit} at the limit"


def rate_limit_text(job: job_pb2.Job) -> str:
    return f"{job.rate_limit.limit} per {duration_text(job.rate_limit.period)} per key {job.rate_limit.key or '(the job)'}"


def concurrency_keys_table(keys: Iterable[job_service_pb2.ConcurrencyKeyUsage]) -> str:
    return table(
        ("KEY", "ACTIVE", "WAITING", "LIMIT"), [(k.key, str(k.active), str(k.waiting), str(k.limit)) for k in keys]
    )


def runs_table(runs: Iterable[run_pb2.Run]) -> str:
    rows = [
        (
            r.id,
            r.job_name or r.job_id,
            state_name(r.state),
            str(r.attempt),
            run_pb2.Run.Trigger.Name(r.trigger) if r.trigger else NONE,
            time_text(r.queue_time),
            run_took(r),
        )
        for r in runs
    ]
    return table(("ID", "JOB", "STATE", "ATTEMPT", "TRIGGER", "QUEUED", "TOOK"), rows)


def run_fields(run: run_pb2.Run) -> str:
    block = fields(
        [
            ("id", run.id),
            ("job", f"{run.job_name} ({run.job_id})" if run.job_name else run.job_id),
            ("state", state_name(run.state)),
            ("waiting", run.waiting_reason),
            ("attempt", str(run.attempt)),
            ("concurrency key", run.concurrency_key),
            ("rate-limit key", run.rate_limit_key),
            ("trigger", run_pb2.Run.Trigger.Name(run.trigger) if run.trigger else ""),
            ("queued", time_text(run.queue_time)),
            ("started", time_text(run.start_time)),
            ("finished", time_text(run.finish_time)),
            ("took", run_took(run)),
            ("pool", run.pool),
            ("waiting", run.waiting_reason),
            ("worker", run.worker_id),
            ("result", result_text(run.result)),
            ("error", error_text(run.error)),
            ("next attempt at", time_text(run.retry_time)),
            ("slot", time_text(run.slot_time)),
            ("cancelled at", time_text(run.cancel_time)),
            ("retried from", run.retried_from_run_id),
            ("idempotency key", run.idempotency_key),
            ("parameters", _compact(run.parameters) if run.HasField("parameters") else ""),
            ("output", _compact(run.output) if run.HasField("output") else ""),
        ]
    )
    if not run.attempts:
        return block
    attempts = table(
        ("ATTEMPT", "STATE", "WORKER", "STARTED", "FINISHED", "ERROR"),
        [
            (
                str(a.attempt),
                state_name(a.state),
                a.worker_id or NONE,
                time_text(a.start_time),
                time_text(a.finish_time),
                error_text(a.error),
            )
            for a in run.attempts
        ],
    )
    return f"{block}\n\n{attempts}"


def status_fields(status: job_service_pb2.JobStatus) -> str:
    health = status.schedule_health
    pairs = [
        ("job", f"{status.job_name} ({status.job_id})"),
        ("state", state_name(status.state) if status.state else "never ran"),
        ("last run", status.last_run.id if _has(status, "last_run") else ""),
        ("waiting", status.last_run.waiting_reason if _has(status, "last_run") else ""),
        ("attempt", str(status.last_run.attempt) if _has(status, "last_run") else ""),
        ("queued", time_text(status.last_run.queue_time) if _has(status, "last_run") else ""),
        ("finished", time_text(status.last_run.finish_time) if _has(status, "last_run") else ""),
        ("waiting", status.waiting_reason),
    ]
    if _has(status, "schedule_health"):
        pairs += [
            ("paused", "yes" if health.paused else "no"),
            ("next fire", time_text(health.next_fire_time)),
            ("last fire", time_text(health.last_fire_time)),
            ("last fire lag", duration_text(health.last_fire_lag) if _has(health, "last_fire_lag") else ""),
            ("misfired slots", str(health.misfired_slots)),
            ("skipped slots", str(health.skipped_slots)),
        ]
    return fields(pairs)


def workers_table(workers: Iterable[job_service_pb2.Worker]) -> str:
    rows = [
        (
            w.worker_id,
            ",".join(w.pools),
            ",".join(w.executors),
            str(len(w.tasks)),
            f"{w.busy_slots}/{w.slots}",
            time_text(w.connect_time),
        )
        for w in workers
    ]
    return table(("WORKER", "POOLS", "EXECUTORS", "TASKS", "BUSY", "CONNECTED"), rows)


def users_table(users: Iterable[auth_service_pb2.User]) -> str:
    rows = [(u.username, auth_service_pb2.Role.Name(u.role), time_text(u.create_time)) for u in users]
    return table(("USERNAME", "ROLE", "CREATED"), rows)


def secrets_table(secrets: Iterable[secret_service_pb2.Secret]) -> str:
    rows = [(s.name, str(s.version), s.key_id, time_text(s.update_time), s.description or NONE) for s in secrets]
    return table(("NAME", "VERSION", "KEY", "UPDATED", "DESCRIPTION"), rows)


def skipped_slots_table(slots: Iterable[job_service_pb2.SkippedSlot]) -> str:
    rows = [
        (
            time_text(s.slot_time),
            job_service_pb2.SkippedSlot.Reason.Name(s.reason),
            time_text(s.record_time),
            s.active_run_id or NONE,
        )
        for s in slots
    ]
    return table(("SLOT", "REASON", "RECORDED", "ACTIVE RUN"), rows)


def log_line(line: run_pb2.LogLine) -> str:
    return f"{time_text(line.time)} [{line.attempt}] {line.text}"


def truncation_notes(attempts: Iterable[int]) -> str:
    """What `runs logs` prints after the lines of attempts whose output hit the cap."""
    return "\n".join(f"(output of attempt {a} was truncated at 1 MiB)" for a in attempts)


def run_event_text(run: run_pb2.Run, previous: run_pb2.Run | None = None) -> str:
    """One line for a state change seen by `runs watch` (`previous`: the state seen before)."""
    text = f"{clock_text(_changed_at(run, previous))} {state_name(run.state)} attempt {run.attempt}"
    if run.worker_id and run.state == run_pb2.Run.RUNNING:
        text += f" on {run.worker_id}"
    if run.state == run_pb2.Run.RETRY_WAIT and _has(run, "retry_time"):
        text += f", next attempt at {time_text(run.retry_time)}"
    if _has(run, "error") and run.state in (run_pb2.Run.FAILED, run_pb2.Run.RETRY_WAIT):
        text += f": {error_text(run.error)}"
    return text


def _changed_at(run: run_pb2.Run, previous: run_pb2.Run | None) -> Timestamp:
    """When the run entered its state, as far as the run tells (an empty Timestamp if it does not)."""
    state = run.state
    if state == run_pb2.Run.RUNNING:
        return run.start_time
    if state == run_pb2.Run.CANCELLING:
        return run.cancel_time
    if state == run_pb2.Run.RETRY_WAIT:
        ended = [a.finish_time for a in run.attempts if a.attempt == run.attempt]
        return ended[0] if ended else run.start_time
    if state == run_pb2.Run.QUEUED and run.attempt > 1:
        # A retry is queued once the wait that the RETRY_WAIT before it announced is over.
        if previous is not None and previous.state == run_pb2.Run.RETRY_WAIT:
            return previous.retry_time
        return Timestamp()
    return run.finish_time if _has(run, "finish_time") else run.queue_time


def _retention_text(job: job_pb2.Job) -> str:
    """The job's own retention (fields it leaves unset follow the server's settings)."""
    if not job.HasField("retention"):
        return ""
    parts = []
    for name in ("succeeded", "failed", "cancelled", "logs"):
        if job.retention.HasField(name):
            value = getattr(job.retention, name)
            parts.append(
                f"{name} {'forever' if value.ToTimedelta().total_seconds() == 0 else duration_text(value)}"
            )
    return ", ".join(parts)


def service_accounts_table(accounts: Iterable[auth_service_pb2.ServiceAccount]) -> str:
    rows = [
        (a.name, auth_service_pb2.Role.Name(a.role), time_text(a.create_time), a.created_by or NONE, a.description)
        for a in accounts
    ]
    return table(("NAME", "ROLE", "CREATED", "BY", "DESCRIPTION"), rows)


def api_keys_table(keys: Iterable[auth_service_pb2.ApiKey]) -> str:
    rows = [
        (
            k.id,
            k.name,
            time_text(k.create_time),
            time_text(k.expire_time),
            time_text(k.last_used_time) if k.HasField("last_used_time") else NONE,
        )
        for k in keys
    ]
    return table(("KEY ID", "NAME", "CREATED", "EXPIRES", "LAST USED"), rows)


def audit_events_table(events: Iterable[auth_service_pb2.AuditEvent]) -> str:
    rows = [
        (
            time_text(e.time),
            e.actor + (f" (key {e.api_key_id})" if e.api_key_id else ""),
            e.role or NONE,
            e.method.rsplit("/", 1)[-1],
            e.resource or NONE,
            e.outcome,
        )
        for e in events
    ]
    return table(("TIME", "ACTOR", "ROLE", "METHOD", "RESOURCE", "OUTCOME"), rows)
