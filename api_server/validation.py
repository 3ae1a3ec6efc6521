"""Request validation: protobuf in, typed values out, InvalidArgument naming the field otherwise."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration

from taskmesh import executor_templates, parameters, retention_policy, schedule_policy, templates
from taskmesh.ids import is_uuid
from taskmesh.limits import MAX_PARAMETERS_BYTES
from taskmesh.names import DEFAULT_POOL, valid_pool_name, valid_task_name
from taskmesh.records import Json
from taskmesh.secrets.references import NAME as SECRET_NAME
from taskmesh.secrets.references import InvalidSecretReference, check_references
from taskmesh.service_errors import InvalidArgument
from taskmesh.states import Role
from taskmesh.v1 import auth_service_pb2, job_pb2, retention_pb2

# Patterns are used with fullmatch: `$` would also match before a final newline.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LABEL_KEY_PATTERN = re.compile(r"[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?")
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
MAX_DESCRIPTION = 4096
MAX_TASK_SECRETS = 64
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_SLEEP_SECONDS = 86_400.0
MAX_HTTP_TIMEOUT = 3_600.0
MAX_SHELL_TIMEOUT = 86_400.0
MAX_ATTEMPTS = 100
MIN_ATTEMPT_TIMEOUT = 1.0
MAX_ATTEMPT_TIMEOUT = 7 * 86_400.0
MAX_BACKOFF = 7 * 86_400.0
# Sizes in UTF-8 bytes. With them a job's protobuf stays under MAX_JOB_BYTES, and its JSON
# (at most 6 bytes per byte, for \u00XX escapes) under the gateway's response limit, so a
# job that was stored can always be shown (gateway/config.py MAX_RESPONSE_BODY_BYTES).
MAX_URL = 8 * 1024
MAX_HEADERS = 64
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8 * 1024
MAX_HEADERS_TOTAL = 64 * 1024
MAX_BODY = 1 << 20
MAX_ARGS = 1024
MAX_ARGV_TOTAL = 256 * 1024
MAX_ENV = 256
MAX_ENV_NAME = 256
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_TOTAL = 128 * 1024
MAX_JOB_BYTES = 2 << 20


def require_id(value: str, field: str = "id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not is_uuid(value):
        raise InvalidArgument(field, f"must be a UUID, got {value!r}")
    return value.lower()


MAX_IDEMPOTENCY_KEY = 256  # also the longest rendered Idempotency-Key header


def idempotency_key(value: str, field: str = "idempotency_key") -> str | None:
    if len(value) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(field, f"must be at most {MAX_IDEMPOTENCY_KEY} characters")
    return value or None


def job_name(value: str, field: str = "job.name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field, "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def description(value: str, field: str = "job.description") -> str:
    if len(value) > MAX_DESCRIPTION:
        raise InvalidArgument(field, f"must be at most {MAX_DESCRIPTION} characters")
    return value


def labels(values: dict[str, str], field: str = "job.labels") -> dict[str, str]:
    if len(values) > MAX_LABELS:
        raise InvalidArgument(field, f"at most {MAX_LABELS} labels")
    for key, value in values.items():
        if not LABEL_KEY_PATTERN.fullmatch(key):
            raise InvalidArgument(f"{field}.{key}", "keys are 1-63 lowercase letters, digits, '.', '_', '/', '-'")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(f"{field}.{key}", f"values are at most {MAX_LABEL_VALUE} characters")
    return dict(values)


def _seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _timeout(parent: job_pb2.HttpExecutor | job_pb2.ShellExecutor, field: str, maximum: float) -> None:
    if parent.HasField("timeout") and not 0 < _seconds(parent.timeout) <= maximum:
        raise InvalidArgument(field, f"must be more than 0s and at most {maximum:.0f}s")


def executor(value: job_pb2.Executor, field: str = "job.executor") -> job_pb2.Executor:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, "is required: set exactly one of noop, sleep, http, shell, python")
    if kind == "sleep":
        seconds = value.sleep.seconds
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise InvalidArgument(f"{field}.sleep.seconds", f"must be between 0 and {MAX_SLEEP_SECONDS:.0f}")
    elif kind == "http":
        _http(value.http, f"{field}.http")
    elif kind == "shell":
        _shell(value.shell, f"{field}.shell")
    elif kind == "python" and not valid_task_name(value.python.task):
        raise InvalidArgument(
            f"{field}.python.task", "must be 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    executor_templates.check(value, field)
    _secret_references(value, field)
    return value


def _secret_references(value: job_pb2.Executor, field: str) -> None:
    """Secrets are named literally in templates, so a trigger cannot choose which one a job reads."""
    if value.WhichOneof("kind") == "python":
        names = list(value.python.secrets)
        if len(names) > MAX_TASK_SECRETS:
            raise InvalidArgument(f"{field}.python.secrets", f"at most {MAX_TASK_SECRETS} names")
        for index, name in enumerate(names):
            if not SECRET_NAME.match(name):
                raise InvalidArgument(
                    f"{field}.python.secrets[{index}]", "must be a secret's name (letters, digits, '_')"
                )
    try:
        check_references(json_format.MessageToDict(value, preserving_proto_field_name=True), field)
    except InvalidSecretReference as error:
        path, _, problem = str(error).partition(": ")
        raise InvalidArgument(path, problem) from None


def _http(spec: job_pb2.HttpExecutor, field: str) -> None:
    if spec.method and spec.method.upper() not in HTTP_METHODS:
        raise InvalidArgument(f"{field}.method", f"must be one of {', '.join(sorted(HTTP_METHODS))}")
    if not spec.url:
        raise InvalidArgument(f"{field}.url", "is required")
    _at_most(spec.url, f"{field}.url", MAX_URL)
    _at_most(spec.idempotency_key, f"{field}.idempotency_key", MAX_IDEMPOTENCY_KEY)
    if templates.is_template(spec.url):
        _templated_url(spec, f"{field}.url")
        return
    parts = urlsplit(spec.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{field}.url", "must be an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (raises on a port that is no number or out of range)
    except ValueError as error:
        raise InvalidArgument(f"{field}.url", f"has an invalid port: {error}") from error
    _headers(dict(spec.headers), f"{field}.headers")
    _at_most(spec.body, f"{field}.body", MAX_BODY)
    _timeout(spec, f"{field}.timeout", MAX_HTTP_TIMEOUT)


def _templated_url(spec: job_pb2.HttpExecutor, field: str) -> None:
    """A templated URL is checked again once rendered (on the worker). Its scheme and host must
    be plain text when the job has headers: they may hold secrets, meant for one origin, which a
    trigger's parameters must not be able to send elsewhere."""
    scheme, _, rest = spec.url.partition("://")
    if scheme not in ("http", "https") or not rest:
        raise InvalidArgument(field, "must start with http:// or https:// (a template may follow)")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if spec.headers and templates.is_template(authority):
        raise InvalidArgument(
            field,
            "a job with headers must not template the URL's host or port (the headers' values could be "
            "sent wherever a trigger's parameters say)",
        )
    _headers(dict(spec.headers), f"{field.removesuffix('.url')}.headers")
    _at_most(spec.body, f"{field.removesuffix('.url')}.body", MAX_BODY)
    _timeout(spec, f"{field.removesuffix('.url')}.timeout", MAX_HTTP_TIMEOUT)


def trigger_parameters(value: struct_pb2.Struct, present: bool, field: str = "parameters") -> Json | None:
    """A trigger's parameters as plain JSON (None when none); merged and validated later."""
    if not present or not value.fields:
        return None
    if value.ByteSize() > 2 * MAX_PARAMETERS_BYTES:  # cheap first bound; the JSON's is checked after merging
        raise InvalidArgument(field, f"must be at most {MAX_PARAMETERS_BYTES} bytes of JSON")
    return parameters.from_struct(value)


def job_parameters(job: job_pb2.Job, field: str = "job.parameters") -> Json | None:
    """The job's default parameters (None when none), bounded."""
    given = trigger_parameters(job.parameters, job.HasField("parameters"), field)
    if given is not None:
        parameters.bounded(given, field)
    return given


def parameter_schema(job: job_pb2.Job, field: str = "job.parameter_schema") -> Json | None:
    """The job's JSON Schema (None when none), checked; the defaults must satisfy it when the
    job has a schedule (its runs get the defaults as they are)."""
    if not job.HasField("parameter_schema") or not job.parameter_schema.fields:
        return None
    schema = parameters.from_struct(job.parameter_schema)
    validator = parameters.check_schema(schema, field)
    if job.HasField("schedule"):
        parameters.validate(validator, job_parameters(job) or {}, "job.parameters")
    return schema


def _headers(headers: dict[str, str], field: str) -> None:
    if len(headers) > MAX_HEADERS:
        raise InvalidArgument(field, f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if len(name) > MAX_HEADER_NAME or not HEADER_NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(field, f"{name[:MAX_HEADER_NAME]!r} is not a valid header name")
        if any(c in value for c in "\r\n"):
            raise InvalidArgument(f"{field}.{name}", "values must not contain line breaks")
        _at_most(value, f"{field}.{name}", MAX_HEADER_VALUE)
    _total(headers, field, MAX_HEADERS_TOTAL)


def _shell(spec: job_pb2.ShellExecutor, field: str) -> None:
    if not spec.argv or not spec.argv[0]:
        raise InvalidArgument(f"{field}.argv", "is required: the program and its arguments")
    if any("\x00" in arg for arg in spec.argv):  # also refused for every request by taskmesh.rpc.requests
        raise InvalidArgument(f"{field}.argv", "must not contain NUL characters")
    if len(spec.argv) > MAX_ARGS:
        raise InvalidArgument(f"{field}.argv", f"at most {MAX_ARGS} arguments")
    if sum(len(arg.encode()) for arg in spec.argv) > MAX_ARGV_TOTAL:
        raise InvalidArgument(f"{field}.argv", f"must be at most {MAX_ARGV_TOTAL} bytes in all")
    env = dict(spec.env)
    if len(env) > MAX_ENV:
        raise InvalidArgument(f"{field}.env", f"at most {MAX_ENV} variables")
    for name, value in env.items():
        if len(name) > MAX_ENV_NAME or not ENV_NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(f"{field}.env", f"{name[:MAX_ENV_NAME]!r} is not a valid environment variable")
        _at_most(value, f"{field}.env.{name}", MAX_ENV_VALUE)
    _total(env, f"{field}.env", MAX_ENV_TOTAL)
    _timeout(spec, f"{field}.timeout", MAX_SHELL_TIMEOUT)


def _at_most(value: str, field: str, maximum: int) -> None:
    if len(value) > maximum // 4 and len(value.encode()) > maximum:  # 4: most bytes a character takes
        raise InvalidArgument(field, f"must be at most {maximum} bytes")


def _total(entries: dict[str, str], field: str, maximum: int) -> None:
    if sum(len(k.encode()) + len(v.encode()) for k, v in entries.items()) > maximum:
        raise InvalidArgument(field, f"names and values must be at most {maximum} bytes in all")


def job_size(job: job_pb2.Job, field: str = "job") -> None:
    """The whole job, after its fields were checked: catches what no field limit names."""
    if job.ByteSize() > MAX_JOB_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_JOB_BYTES} bytes serialized")


def schedule(value: job_pb2.Schedule, now: datetime, field: str = "job.schedule") -> schedule_policy.Schedule:
    return schedule_policy.validate(value, now, field)


def retry_policy(value: job_pb2.RetryPolicy, field: str = "job.retry_policy") -> job_pb2.RetryPolicy:
    """Unset (zero) fields take their defaults (see RetryPolicy); set ones must make sense."""
    if value.max_attempts and not 1 <= value.max_attempts <= MAX_ATTEMPTS:
        raise InvalidArgument(f"{field}.max_attempts", f"must be between 1 and {MAX_ATTEMPTS}")
    initial = _seconds(value.initial_backoff) if value.HasField("initial_backoff") else None
    if initial is not None and not 0 < initial <= MAX_BACKOFF:
        raise InvalidArgument(f"{field}.initial_backoff", "must be more than 0s and at most 7 days")
    multiplier = value.backoff_multiplier
    if multiplier and (not math.isfinite(multiplier) or not 1 <= multiplier <= 100):
        raise InvalidArgument(f"{field}.backoff_multiplier", "must be between 1 and 100")
    if value.HasField("max_backoff"):
        maximum = _seconds(value.max_backoff)
        if not 0 < maximum <= MAX_BACKOFF:
            raise InvalidArgument(f"{field}.max_backoff", "must be more than 0s and at most 7 days")
        if maximum < (initial if initial is not None else 1.0):
            raise InvalidArgument(f"{field}.max_backoff", "must not be less than initial_backoff (1s when unset)")
    if not math.isfinite(value.jitter) or not 0 <= value.jitter <= 1:
        raise InvalidArgument(f"{field}.jitter", "must be between 0 and 1")
    if any(not 100 <= status <= 599 for status in value.non_retryable_http_statuses):
        raise InvalidArgument(f"{field}.non_retryable_http_statuses", "HTTP statuses are 100-599")
    if any(not 0 <= code <= 255 for code in value.non_retryable_exit_codes):
        raise InvalidArgument(f"{field}.non_retryable_exit_codes", "exit codes are 0-255")
    return value


MIN_START_DEADLINE = 1.0
MAX_START_DEADLINE = 30 * 24 * 3600.0


def pool(value: str, field: str = "job.pool") -> str:
    """A pool name ("default" when empty): it becomes part of RabbitMQ queue names."""
    if not value:
        return DEFAULT_POOL
    if not valid_pool_name(value):
        raise InvalidArgument(
            field, "must be 1-63 lowercase letters, digits, '_' and '-', starting with a letter or digit"
        )
    return value


def start_deadline(value: Duration, field: str = "job.start_deadline") -> float:
    seconds = _seconds(value)
    if not MIN_START_DEADLINE <= seconds <= MAX_START_DEADLINE:
        raise InvalidArgument(field, "must be between 1s and 30 days")
    return seconds


def attempt_timeout(value: Duration, field: str = "job.attempt_timeout") -> float:
    seconds = _seconds(value)
    if not MIN_ATTEMPT_TIMEOUT <= seconds <= MAX_ATTEMPT_TIMEOUT:
        raise InvalidArgument(field, "must be between 1s and 7 days")
    return seconds


def retention(value: retention_pb2.Retention, field: str = "job.retention") -> retention_pb2.Retention:
    """Each set duration is 0s (keep forever) or between 1h and 3650 days; unset ones take the
    settings. A fraction of a second is refused rather than rounded."""
    for name in retention_policy.FIELDS_IN_ORDER:
        if not value.HasField(name):
            continue
        duration = getattr(value, name)
        if duration.seconds < 0 or duration.nanos != 0:
            raise InvalidArgument(f"{field}.{name}", "must be a whole, non-negative number of seconds")
        problem = retention_policy.override_error(duration.ToTimedelta())
        if problem:
            raise InvalidArgument(f"{field}.{name}", problem)
    return value


def username(value: str, field: str = "username") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not USERNAME_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "must be 1-64 letters, digits, '.', '_', '@' or '-'")
    return value


def new_password(value: str, field: str = "password") -> str:
    if len(value) < 8:
        raise InvalidArgument(field, "must be at least 8 characters")
    if len(value) > 1024:
        raise InvalidArgument(field, "must be at most 1024 characters")
    return value


def role(value: int, field: str = "role") -> Role:
    if value == auth_service_pb2.ROLE_UNSPECIFIED or value not in auth_service_pb2.Role.values():
        raise InvalidArgument(field, "must be one of ADMIN, OPERATOR, VIEWER, WORKER")
    return Role(auth_service_pb2.Role.Name(value))


MAX_KEY_TTL_SECONDS = 100 * 366 * 86400
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


def key_name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not KEY_NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "must be 1-64 letters, digits, spaces, '.', '_', '@' or '-'")
    return value


def key_id(value: str, field: str = "key_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not KEY_ID_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "must be an API key id (16 hex digits, as ListApiKeys shows)")
    return value


def key_ttl(value: Duration, field: str = "ttl") -> timedelta:
    if value.nanos < 0 or value.seconds <= 0:
        raise InvalidArgument(field, "must be positive")
    if value.seconds > MAX_KEY_TTL_SECONDS:
        raise InvalidArgument(field, "is longer than any key may live")
    return timedelta(seconds=value.seconds)
