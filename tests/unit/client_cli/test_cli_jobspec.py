"""`jobs create` / `jobs update` flags and files -> Job fields and update masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmesh.cli import jobspec, parser
from taskmesh.cli.errors import UsageError
from taskmesh.cli.main import split_shell_argv
from taskmesh.client import builders
from taskmesh.v1 import job_pb2


def flags(*argv: str, action: str = "create") -> tuple[job_pb2.Job, set[str]]:
    own, shell = split_shell_argv(["jobs", action, *argv])
    args = parser.build().parse_args(own)
    args.shell_argv = shell
    job = job_pb2.Job()
    return job, jobspec.apply_flags(job, args)


def test_executor_flags() -> None:
    assert flags("j", "--noop")[0].executor.WhichOneof("kind") == "noop"
    assert flags("j", "--sleep", "1m")[0].executor.sleep.seconds == 60
    http, _ = flags("j", "--http-url", "https://x", "--http-method", "post", "--http-header", "X-A: b c")
    assert (http.executor.http.url, http.executor.http.method) == ("https://x", "POST")
    assert dict(http.executor.http.headers) == {"X-A": "b c"}
    shell, touched = flags(
        "j", "--shell", "--shell-env", "A=1=2", "--shell-timeout", "90s", "--", "python3", "-c", "x"
    )
    assert list(shell.executor.shell.argv) == ["python3", "-c", "x"]
    assert dict(shell.executor.shell.env) == {"A": "1=2"}
    assert shell.executor.shell.timeout.seconds == 90
    assert touched == {"name", "executor"}


def test_schedule_flags_map_onto_the_proto() -> None:
    job, touched = flags(
        "j", "--cron", "*/5 * * * *", "--timezone", "Europe/Berlin", "--misfire", "skip", "--overlap", "forbid"
    )
    assert job.schedule.cron == job_pb2.CronSchedule(expression="*/5 * * * *", timezone="Europe/Berlin")
    assert job.schedule.misfire_policy == job_pb2.Schedule.SKIP
    assert job.schedule.overlap_policy == job_pb2.Schedule.FORBID
    assert touched == {"name", "schedule"}
    every, _ = flags("j", "--every", "30s", "--anchor", "2030-01-01T00:00:00Z", "--catch-up-window", "1h")
    assert every.schedule.interval.every.seconds == 30 and every.schedule.catch_up_window.seconds == 3600
    once, _ = flags("j", "--at", "2030-01-01T09:00:00+01:00", "--schedule-jitter", "5s")
    assert once.schedule.once.at == builders.timestamp("2030-01-01T08:00:00Z")
    assert once.schedule.jitter.seconds == 5


def test_retry_flags_map_onto_the_proto() -> None:
    job, touched = flags(
        "--max-attempts", "5", "--initial-backoff", "2s", "--backoff-multiplier", "3", "--max-backoff", "1m",
        "--retry-jitter", "0.5", "--non-retryable-http-status", "404", "--non-retryable-http-status", "410",
        "--non-retryable-exit-code", "2", "--attempt-timeout", "10m",
    )  # fmt: skip
    policy = job.retry_policy
    assert (policy.max_attempts, policy.initial_backoff.seconds, policy.backoff_multiplier) == (5, 2, 3)
    assert (policy.max_backoff.seconds, policy.jitter) == (60, 0.5)
    assert list(policy.non_retryable_http_statuses) == [404, 410]
    assert list(policy.non_retryable_exit_codes) == [2]
    assert job.attempt_timeout.seconds == 600
    assert touched == {"retry_policy", "attempt_timeout"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["j", "--every", "1m", "--timezone", "UTC"], "--timezone applies to --cron"),
        (["j", "--cron", "* * * * *", "--anchor", "2030-01-01T00:00:00Z"], "--anchor applies to --every"),
        (["j", "--overlap", "forbid"], "needs a schedule"),
        (["j", "--http-method", "POST"], "need --http-url"),
        (["j", "--shell-env", "A=1"], "need --shell"),
        (["j", "--shell"], "after --"),
        (["j", "--noop", "--", "ls"], "add --shell"),
        (["j", "--every", "soon"], "--every: 'soon' is not a duration"),
        (["j", "--at", "2030-01-01T00:00:00"], "--at: "),
        (["j", "--cron", "* * * * *", "--misfire", "sometimes"], "--misfire: unknown misfire policy"),
        (["j", "--label", "novalue"], "--label: expected KEY=VALUE"),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("*", r"\*")):
        flags(*argv)


def test_argparse_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="not allowed with argument"):
        parser.build().parse_args(["jobs", "create", "j", "--noop", "--sleep", "1"])
    with pytest.raises(UsageError, match="see `taskmesh jobs --help`"):
        parser.build().parse_args(["jobs", "frobnicate"])


def test_split_shell_argv_only_at_the_first_double_dash() -> None:
    assert split_shell_argv(["a", "--", "b", "--", "c"]) == (["a"], ["b", "--", "c"])
    assert split_shell_argv(["a"]) == (["a"], [])


def test_from_file_takes_the_rest_api_json_and_drops_output_fields(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps(
            {
                "id": "ignored",
                "createTime": "2030-01-01T00:00:00Z",
                "name": "from-file",
                "executor": {"http": {"url": "https://x", "timeout": "10s"}},
                "retry_policy": {"maxAttempts": 2},
            }
        )
    )
    job, named = jobspec.load_job_file(str(path))
    assert named == {"name", "executor", "retry_policy"}
    assert job.id == "" and not job.HasField("create_time")
    assert job.executor.http.timeout.seconds == 10 and job.retry_policy.max_attempts == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not valid JSON"), ("[]", "must hold a JSON object"), ('{"nmae": "x"}', "is not a job")],
)
def test_bad_files_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "job.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        jobspec.load_job_file(str(path))
    with pytest.raises(UsageError, match="cannot read"):
        jobspec.load_job_file(str(tmp_path / "missing.json"))


def test_update_flags_change_only_what_they_name() -> None:
    current = job_pb2.Job(
        id="x", name="j", executor=builders.http("https://x", method="POST"), labels={"a": "1", "b": "2"}
    )
    current.schedule.CopyFrom(builders.cron("0 * * * *", "UTC"))
    own, _ = split_shell_argv(
        [
            "jobs",
            "update",
            "j",
            "--http-timeout",
            "5s",
            "--misfire",
            "skip",
            "--label",
            "c=3",
            "--remove-label",
            "a",
        ]
    )
    args = parser.build().parse_args(own)
    args.shell_argv = []
    touched = jobspec.apply_flags(current, args)
    assert touched == {"executor", "schedule", "labels"}
    assert current.executor.http.method == "POST" and current.executor.http.timeout.seconds == 5
    assert current.schedule.cron.expression == "0 * * * *"
    assert current.schedule.misfire_policy == job_pb2.Schedule.SKIP
    assert dict(current.labels) == {"b": "2", "c": "3"}


def test_overlay_file_replaces_only_the_files_fields() -> None:
    base = job_pb2.Job(id="x", name="j", description="keep", labels={"a": "1"}, executor=builders.noop())
    overlay = job_pb2.Job(labels={"z": "9"}, executor=builders.sleep(1))
    jobspec.overlay_file(base, overlay, {"labels", "executor"})
    assert base.description == "keep" and dict(base.labels) == {"z": "9"}
    assert base.executor.WhichOneof("kind") == "sleep"
