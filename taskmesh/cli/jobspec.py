"""`jobs create` and `jobs update` flags (and --from-file) -> a Job message and its update mask.

Flags are laid over a base job: the --from-file job, or for updates the current job with the
file's fields laid over it. So `--http-timeout 5s` alone changes only the timeout of an http
executor, `--misfire skip` only the misfire policy of an existing schedule.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from google.protobuf import json_format

from taskmesh.cli.errors import UsageError
from taskmesh.client import builders
from taskmesh.client.client import OUTPUT_ONLY_FIELDS
from taskmesh.v1 import job_pb2

T = TypeVar("T")


def load_job_file(path: str, stdin: TextIO = sys.stdin) -> tuple[job_pb2.Job, set[str]]:
    """The job a JSON file ("-" for stdin) describes, in the REST API's JSON form, and the fields
    it names. Output-only fields (id, times) are dropped, so `jobs get -o json` output works."""
    try:
        text = stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise UsageError(f"--from-file: cannot read {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--from-file: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--from-file: {path} must hold a JSON object (a job)")
    by_json_name = {str(f.json_name): f.name for f in job_pb2.Job.DESCRIPTOR.fields}
    named = {by_json_name.get(str(key), str(key)) for key in data}
    for field in OUTPUT_ONLY_FIELDS:
        data.pop(field, None)
        data.pop(job_pb2.Job.DESCRIPTOR.fields_by_name[field].json_name, None)
    try:
        job = json_format.ParseDict(data, job_pb2.Job())
    except json_format.ParseError as error:
        raise UsageError(f"--from-file: {path} is not a job: {error}") from None
    return job, named - set(OUTPUT_ONLY_FIELDS)


def overlay_file(base: job_pb2.Job, file_job: job_pb2.Job, fields: set[str]) -> None:
    """Replace base's `fields` with the file's values."""
    for field in fields:
        base.ClearField(field)
    partial = job_pb2.Job()
    partial.CopyFrom(file_job)
    for descriptor in job_pb2.Job.DESCRIPTOR.fields:
        if descriptor.name not in fields:
            partial.ClearField(descriptor.name)
    base.MergeFrom(partial)


def apply_flags(job: job_pb2.Job, args: argparse.Namespace) -> set[str]:
    """Lay the flags over `job`; return the top-level fields they changed."""
    touched: set[str] = set()
    if getattr(args, "name", None):
        job.name = args.name
        touched.add("name")
    if args.description is not None:
        job.description = args.description
        touched.add("description")
    if _labels(job, args):
        touched.add("labels")
    if _executor(job, args):
        touched.add("executor")
    if _schedule(job, args):
        touched.add("schedule")
    if _retry_policy(job, args):
        touched.add("retry_policy")
    if args.attempt_timeout is not None:
        job.attempt_timeout.CopyFrom(_convert("--attempt-timeout", builders.duration, args.attempt_timeout))
        touched.add("attempt_timeout")
    if _retention(job, args):
        touched.add("retention")
    if args.pool is not None:
        job.pool = args.pool
        touched.add("pool")
    if args.start_deadline is not None:
        job.start_deadline.CopyFrom(_convert("--start-deadline", builders.duration, args.start_deadline))
        touched.add("start_deadline")
    return touched | _flow(job, args)


def _flow(job: job_pb2.Job, args: argparse.Namespace) -> set[str]:
    """Flow-control flags; a key or on-limit without a limit changes the job's current one."""
    touched: set[str] = set()
    if args.priority is not None:
        job.priority = args.priority
        touched.add("priority")
    if args.concurrency_limit is not None or args.concurrency_key is not None or args.on_limit is not None:
        if args.concurrency_limit is not None:
            job.concurrency.limit = args.concurrency_limit
        if args.concurrency_key is not None:
            job.concurrency.key = args.concurrency_key
        if args.on_limit is not None:
            on_limit = job_pb2.ConcurrencyLimit(on_limit=args.on_limit.upper().replace("-", "_"))
            job.concurrency.on_limit = on_limit.on_limit
        touched.add("concurrency")
    if args.rate_limit is not None or args.rate_limit_key is not None:
        if args.rate_limit is not None:
            count, sep, period = args.rate_limit.partition("/")
            if not sep or not count.strip().isdigit():
                raise UsageError(f"--rate-limit: expected N/PERIOD such as 20/10s, got {args.rate_limit!r}")
            job.rate_limit.limit = int(count)
            job.rate_limit.period.CopyFrom(_convert("--rate-limit", builders.duration, period.strip()))
        if args.rate_limit_key is not None:
            job.rate_limit.key = args.rate_limit_key
        touched.add("rate_limit")
    return touched


def _retention(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    changed = False
    for name in ("succeeded", "failed", "cancelled", "logs"):
        value = getattr(args, f"keep_{name}", None)
        if value is not None:
            getattr(job.retention, name).CopyFrom(_convert(f"--keep-{name}", builders.duration, value))
            changed = True
    return changed


def _convert(flag: str, convert: Callable[[Any], T], value: Any) -> T:
    try:
        return convert(value)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def key_value(flag: str, text: str, separator: str = "=") -> tuple[str, str]:
    key, sep, value = text.partition(separator)
    if not sep or not key.strip():
        raise UsageError(f"{flag}: expected KEY{separator}VALUE, got {text!r}")
    return key.strip(), value.strip() if separator != "=" else value


def _labels(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    for text in args.label or ():
        key, value = key_value("--label", text)
        job.labels[key] = value
    for key in getattr(args, "remove_label", None) or ():
        job.labels.pop(key, None)
    return bool(args.label or getattr(args, "remove_label", None))


def _executor(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    shell_argv: list[str] = args.shell_argv
    if shell_argv and not args.shell:
        raise UsageError("arguments after -- are the program of a shell job: add --shell")
    if args.noop:
        job.executor.CopyFrom(builders.noop())
    elif args.sleep is not None:
        seconds = _convert("--sleep", builders.parse_duration, args.sleep).total_seconds()
        job.executor.CopyFrom(builders.sleep(seconds))
    elif args.http_url is not None:
        job.executor.CopyFrom(builders.http(args.http_url))
    elif args.python is not None:
        job.executor.CopyFrom(builders.python(args.python))
    elif args.shell:
        if not shell_argv:
            raise UsageError(
                "--shell needs the program and its arguments after --, e.g. --shell -- python3 job.py"
            )
        job.executor.CopyFrom(builders.shell(shell_argv))
    kind_given = bool(
        args.noop or args.sleep is not None or args.http_url is not None or args.shell or args.python is not None
    )
    return _http_extras(job, args) | _shell_extras(job, args) | kind_given


def _http_extras(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    given = [args.http_method, args.http_header, args.http_body, args.http_timeout]
    if all(value is None or value == [] for value in given):
        return False
    if job.executor.WhichOneof("kind") != "http":
        raise UsageError("--http-method, --http-header, --http-body and --http-timeout need --http-url")
    spec = job.executor.http
    if args.http_method is not None:
        spec.method = args.http_method.upper()
    for header in args.http_header or ():
        name, value = key_value("--http-header", header, ":")
        spec.headers[name] = value
    if args.http_body is not None:
        spec.body = args.http_body
    if args.http_timeout is not None:
        spec.timeout.CopyFrom(_convert("--http-timeout", builders.duration, args.http_timeout))
    return True


def _shell_extras(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    if not args.shell_env and args.shell_timeout is None:
        return False
    if job.executor.WhichOneof("kind") != "shell":
        raise UsageError("--shell-env and --shell-timeout need --shell")
    spec = job.executor.shell
    for text in args.shell_env or ():
        key, value = key_value("--shell-env", text)
        spec.env[key] = value
    if args.shell_timeout is not None:
        spec.timeout.CopyFrom(_convert("--shell-timeout", builders.duration, args.shell_timeout))
    return True


def _schedule(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    policies = {
        "--misfire": args.misfire,
        "--overlap": args.overlap,
        "--schedule-jitter": args.schedule_jitter,
        "--catch-up-window": args.catch_up_window,
        "--timezone": args.timezone,
        "--anchor": args.anchor,
    }
    kinds = {"--cron": args.cron, "--every": args.every, "--at": args.at}
    given = [flag for flag, value in {**kinds, **policies}.items() if value is not None]
    if getattr(args, "no_schedule", False):
        if given:
            raise UsageError(f"--no-schedule cannot be combined with {', '.join(given)}")
        job.ClearField("schedule")
        return True
    if not given:
        return False
    schedule = job.schedule
    if args.cron is not None:
        schedule.cron.expression = args.cron
    elif args.every is not None:
        schedule.interval.every.CopyFrom(_convert("--every", builders.duration, args.every))
    elif args.at is not None:
        schedule.once.at.CopyFrom(_convert("--at", builders.timestamp, args.at))
    kind = schedule.WhichOneof("kind")
    if kind is None:
        raise UsageError(f"{given[0]} needs a schedule: add --cron, --every or --at")
    if args.timezone is not None:
        if kind != "cron":
            raise UsageError("--timezone applies to --cron schedules only")
        schedule.cron.timezone = args.timezone
    if args.anchor is not None:
        if kind != "interval":
            raise UsageError("--anchor applies to --every schedules only")
        schedule.interval.anchor_time.CopyFrom(_convert("--anchor", builders.timestamp, args.anchor))
    if args.misfire is not None:
        schedule.misfire_policy = _convert("--misfire", builders.misfire_policy, args.misfire)
    if args.overlap is not None:
        schedule.overlap_policy = _convert("--overlap", builders.overlap_policy, args.overlap)
    if args.schedule_jitter is not None:
        schedule.jitter.CopyFrom(_convert("--schedule-jitter", builders.duration, args.schedule_jitter))
    if args.catch_up_window is not None:
        schedule.catch_up_window.CopyFrom(_convert("--catch-up-window", builders.duration, args.catch_up_window))
    return True


def _retry_policy(job: job_pb2.Job, args: argparse.Namespace) -> bool:
    policy = job.retry_policy
    changed = False
    if args.max_attempts is not None:
        policy.max_attempts = args.max_attempts
        changed = True
    if args.initial_backoff is not None:
        policy.initial_backoff.CopyFrom(_convert("--initial-backoff", builders.duration, args.initial_backoff))
        changed = True
    if args.backoff_multiplier is not None:
        policy.backoff_multiplier = args.backoff_multiplier
        changed = True
    if args.max_backoff is not None:
        policy.max_backoff.CopyFrom(_convert("--max-backoff", builders.duration, args.max_backoff))
        changed = True
    if args.retry_jitter is not None:
        policy.jitter = args.retry_jitter
        changed = True
    if args.non_retryable_http_status:
        policy.ClearField("non_retryable_http_statuses")
        policy.non_retryable_http_statuses.extend(args.non_retryable_http_status)
        changed = True
    if args.non_retryable_exit_code:
        policy.ClearField("non_retryable_exit_codes")
        policy.non_retryable_exit_codes.extend(args.non_retryable_exit_code)
        changed = True
    return changed


def trigger_parameters(path: str | None, pairs: Sequence[str], stdin: TextIO = sys.stdin) -> dict[str, Any] | None:
    """--params-file (a JSON object) with each --param KEY=VALUE over it; None when neither.
    A VALUE that parses as JSON is that value (42, true, [1, 2], "42"), any other is a string."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            text = stdin.read() if path == "-" else Path(path).read_text()
        except OSError as error:
            raise UsageError(f"--params-file: cannot read {path}: {error.strerror or error}") from None
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"--params-file: {path} is not JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--params-file: {path} must hold a JSON object")
        values.update(loaded)
    for pair in pairs:
        key, text = key_value("--param", pair)
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values or None
