"""Plain Python values -> the protobuf messages the API takes: durations, timestamps,
executors, schedules and retry policies. Every function raises ValueError on bad input."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.v1 import job_pb2, retention_pb2

M = TypeVar("M", bound=Message)
DurationLike: TypeAlias = "timedelta | float | int | str"
TimeLike: TypeAlias = "datetime | str"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: DurationLike) -> timedelta:
    """`timedelta`, seconds as a number, or text like "30s", "1m30s", "2h", "500ms", "1.5" (seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = value.strip().lower()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 1m30s, 2h, 500ms")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def duration(value: DurationLike) -> Duration:
    result = Duration()
    result.FromTimedelta(parse_duration(value))
    return result


def parse_time(value: TimeLike) -> datetime:
    """An aware datetime, or RFC 3339 text such as 2030-01-01T09:00:00Z or ...+01:00."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time, e.g. 2030-01-01T09:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!s} has no time zone offset; add Z or e.g. +01:00")
    return moment


def timestamp(value: TimeLike) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(parse_time(value).astimezone(UTC))
    return result


def message(value: M | Mapping[str, Any], message_type: type[M]) -> M:
    """`value` itself, or the message its protobuf JSON form (camelCase or snake_case keys) describes."""
    if isinstance(value, message_type):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a {message_type.DESCRIPTOR.name} or a mapping, got {type(value).__name__}")
    try:
        return json_format.ParseDict(dict(value), message_type())
    except json_format.ParseError as error:
        raise ValueError(f"invalid {message_type.DESCRIPTOR.name}: {error}") from None


# Executors


def noop() -> job_pb2.Executor:
    return job_pb2.Executor(noop=job_pb2.NoopExecutor())


def python(task: str) -> job_pb2.Executor:
    """A registered Python task (taskmesh.tasks), run by workers whose registry has it."""
    return job_pb2.Executor(python=job_pb2.PythonExecutor(task=task))


def sleep(seconds: float) -> job_pb2.Executor:
    return job_pb2.Executor(sleep=job_pb2.SleepExecutor(seconds=seconds))


def http(
    url: str,
    *,
    method: str = "",
    headers: Mapping[str, str] | None = None,
    body: str = "",
    timeout: DurationLike | None = None,
) -> job_pb2.Executor:
    spec = job_pb2.HttpExecutor(url=url, method=method.upper(), headers=dict(headers or {}), body=body)
    if timeout is not None:
        spec.timeout.CopyFrom(duration(timeout))
    return job_pb2.Executor(http=spec)


def shell(
    argv: Iterable[str], *, env: Mapping[str, str] | None = None, timeout: DurationLike | None = None
) -> job_pb2.Executor:
    spec = job_pb2.ShellExecutor(argv=list(argv), env=dict(env or {}))
    if timeout is not None:
        spec.timeout.CopyFrom(duration(timeout))
    return job_pb2.Executor(shell=spec)


# Schedules


def misfire_policy(name: str) -> job_pb2.Schedule.MisfirePolicy:
    """FIRE_ONCE, SKIP or FIRE_ALL; case and '-'/'_' do not matter."""
    return cast(
        job_pb2.Schedule.MisfirePolicy, _enum_value(job_pb2.Schedule.MisfirePolicy, name, "misfire policy")
    )


def overlap_policy(name: str) -> job_pb2.Schedule.OverlapPolicy:
    """ALLOW, FORBID or REPLACE; case does not matter."""
    return cast(
        job_pb2.Schedule.OverlapPolicy, _enum_value(job_pb2.Schedule.OverlapPolicy, name, "overlap policy")
    )


def cron(expression: str, timezone: str = "", **policies: Any) -> job_pb2.Schedule:
    """A cron schedule; `policies` are schedule_policies() arguments."""
    schedule = schedule_policies(**policies)
    schedule.cron.CopyFrom(job_pb2.CronSchedule(expression=expression, timezone=timezone))
    return schedule


def every(interval: DurationLike, anchor: TimeLike | None = None, **policies: Any) -> job_pb2.Schedule:
    schedule = schedule_policies(**policies)
    schedule.interval.every.CopyFrom(duration(interval))
    if anchor is not None:
        schedule.interval.anchor_time.CopyFrom(timestamp(anchor))
    return schedule


def once(at: TimeLike, **policies: Any) -> job_pb2.Schedule:
    schedule = schedule_policies(**policies)
    schedule.once.at.CopyFrom(timestamp(at))
    return schedule


def schedule_policies(
    *,
    misfire: str | None = None,
    overlap: str | None = None,
    jitter: DurationLike | None = None,
    catch_up_window: DurationLike | None = None,
) -> job_pb2.Schedule:
    """A Schedule with only its policies set (no kind yet)."""
    schedule = job_pb2.Schedule()
    if misfire is not None:
        schedule.misfire_policy = misfire_policy(misfire)
    if overlap is not None:
        schedule.overlap_policy = overlap_policy(overlap)
    if jitter is not None:
        schedule.jitter.CopyFrom(duration(jitter))
    if catch_up_window is not None:
        schedule.catch_up_window.CopyFrom(duration(catch_up_window))
    return schedule


def retention(
    *,
    succeeded: DurationLike | None = None,
    failed: DurationLike | None = None,
    cancelled: DurationLike | None = None,
    logs: DurationLike | None = None,
) -> retention_pb2.Retention:
    """How long a job's finished runs (per state) and log lines are kept; what is left out takes
    the server's settings, 0 keeps forever (see retention.proto)."""
    message = retention_pb2.Retention()
    for name, value in (("succeeded", succeeded), ("failed", failed), ("cancelled", cancelled), ("logs", logs)):
        if value is not None:
            getattr(message, name).CopyFrom(duration(value))
    return message


def retry_policy(
    *,
    max_attempts: int | None = None,
    initial_backoff: DurationLike | None = None,
    backoff_multiplier: float | None = None,
    max_backoff: DurationLike | None = None,
    jitter: float | None = None,
    non_retryable_http_statuses: Iterable[int] = (),
    non_retryable_exit_codes: Iterable[int] = (),
) -> job_pb2.RetryPolicy:
    """A RetryPolicy; what is left out takes the server's defaults (see job.proto)."""
    policy = job_pb2.RetryPolicy(
        non_retryable_http_statuses=list(non_retryable_http_statuses),
        non_retryable_exit_codes=list(non_retryable_exit_codes),
    )
    if max_attempts is not None:
        policy.max_attempts = max_attempts
    if initial_backoff is not None:
        policy.initial_backoff.CopyFrom(duration(initial_backoff))
    if backoff_multiplier is not None:
        policy.backoff_multiplier = backoff_multiplier
    if max_backoff is not None:
        policy.max_backoff.CopyFrom(duration(max_backoff))
    if jitter is not None:
        policy.jitter = jitter
    return policy


def _enum_value(enum: Any, name: str, what: str) -> int:
    key = name.strip().upper().replace("-", "_")
    allowed = [v.name for v in enum.DESCRIPTOR.values if not v.name.endswith("_UNSPECIFIED")]
    if key not in allowed:
        choices = ", ".join(n.lower().replace("_", "-") for n in allowed)
        raise ValueError(f"unknown {what} {name!r}; use one of {choices}")
    return int(enum.Value(key))
