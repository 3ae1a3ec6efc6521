"""Validation of the flow-control fields of a job and a trigger (README "Flow control"):
protobuf in, protobuf JSON (what jobs.concurrency / jobs.rate_limit hold) out, InvalidArgument
naming the field otherwise."""

from __future__ import annotations

from taskmesh import flow_keys, flow_policy
from taskmesh.convert import to_json
from taskmesh.records import Json
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2


def priority(value: int, field: str = "job.priority") -> int:
    if not flow_policy.MIN_PRIORITY <= value <= flow_policy.MAX_PRIORITY:
        raise InvalidArgument(field, f"must be between {flow_policy.MIN_PRIORITY} and {flow_policy.MAX_PRIORITY}")
    return value


def _key(source: str, field: str) -> None:
    if "\x00" in source:
        raise InvalidArgument(field, "must not contain NUL characters")
    try:
        flow_keys.check_template(source, field)
    except flow_keys.KeyTemplateError as error:
        raise InvalidArgument(
            field, f"is not a valid template: {str(error).removeprefix(field + ': ')}"
        ) from error


def concurrency(value: job_pb2.ConcurrencyLimit, field: str = "job.concurrency") -> Json:
    _key(value.key, f"{field}.key")
    if not 1 <= value.limit <= flow_policy.MAX_CONCURRENCY_LIMIT:
        raise InvalidArgument(f"{field}.limit", f"must be between 1 and {flow_policy.MAX_CONCURRENCY_LIMIT}")
    if value.on_limit not in job_pb2.ConcurrencyLimit.OnLimit.values():
        raise InvalidArgument(f"{field}.on_limit", "must be QUEUE, SKIP or CANCEL_OLDEST")
    normal = job_pb2.ConcurrencyLimit()
    normal.CopyFrom(value)
    if normal.on_limit == job_pb2.ConcurrencyLimit.ON_LIMIT_UNSPECIFIED:
        normal.on_limit = job_pb2.ConcurrencyLimit.QUEUE
    return to_json(normal)


def rate_limit(value: job_pb2.RateLimit, field: str = "job.rate_limit") -> Json:
    _key(value.key, f"{field}.key")
    if not 1 <= value.limit <= flow_policy.MAX_RATE_LIMIT:
        raise InvalidArgument(f"{field}.limit", f"must be between 1 and {flow_policy.MAX_RATE_LIMIT}")
    seconds = value.period.seconds + value.period.nanos / 1e9
    if not value.HasField("period") or not (
        flow_policy.MIN_PERIOD_SECONDS <= seconds <= flow_policy.MAX_PERIOD_SECONDS
    ):
        raise InvalidArgument(f"{field}.period", "must be between 1s and 24h")
    return to_json(value)
