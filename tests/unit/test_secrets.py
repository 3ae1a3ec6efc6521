"""Write-only job secrets (taskmesh.redaction) and the environment of shell jobs."""

from datetime import UTC, datetime

import pytest

from taskmesh import redaction
from taskmesh.convert import public_job
from taskmesh.records import JobRecord
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2
from worker.executors.environment import process_environment


def _http(url: str = "https://api.example.com/v1", **headers: str) -> job_pb2.Executor:
    return job_pb2.Executor(http=job_pb2.HttpExecutor(url=url, headers=headers))


def _shell(argv: tuple[str, ...] = ("deploy",), **env: str) -> job_pb2.Executor:
    return job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=list(argv), env=env))


def test_every_secret_value_is_redacted() -> None:
    assert dict(redaction.redact(_http(Authorization="Bearer s3cret", Accept="json")).http.headers) == {
        "Authorization": redaction.REDACTED,
        "Accept": redaction.REDACTED,
    }
    assert dict(redaction.redact(_shell(API_KEY="k")).shell.env) == {"API_KEY": redaction.REDACTED}
    assert redaction.redact(job_pb2.Executor(noop=job_pb2.NoopExecutor())).HasField("noop")


def test_a_placeholder_sent_back_keeps_the_stored_value() -> None:
    stored = _http(Authorization="Bearer s3cret", Accept="json")
    new = _http(Authorization=redaction.REDACTED, Accept="text")
    assert dict(redaction.restore(new, stored).http.headers) == {
        "Authorization": "Bearer s3cret",
        "Accept": "text",
    }
    assert dict(redaction.restore(_shell(API_KEY=redaction.REDACTED), _shell(API_KEY="k")).shell.env) == {
        "API_KEY": "k"
    }
    # Same origin, another path: kept.
    moved = _http("https://API.example.com:443/v2", Authorization=redaction.REDACTED)
    assert redaction.restore(moved, stored).http.headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    ("new", "stored", "field"),
    [
        (_http(Authorization=redaction.REDACTED), None, "job.executor.http.headers.Authorization"),
        (_http(X=redaction.REDACTED), _http(Authorization="a"), "job.executor.http.headers.X"),
        (
            _http("https://evil.example.net/", Authorization=redaction.REDACTED),
            _http(Authorization="a"),
            "job.executor.http.headers.Authorization",
        ),
        (
            _http("http://api.example.com/v1", Authorization=redaction.REDACTED),
            _http(Authorization="a"),
            "job.executor.http.headers.Authorization",
        ),
        (_shell(("env",), API_KEY=redaction.REDACTED), _shell(API_KEY="k"), "job.executor.shell.env.API_KEY"),
        (_shell(API_KEY=redaction.REDACTED), _http(API_KEY="k"), "job.executor.shell.env.API_KEY"),
    ],
)
def test_a_placeholder_with_nothing_to_keep_is_refused(
    new: job_pb2.Executor, stored: job_pb2.Executor | None, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        redaction.restore(new, stored)
    assert caught.value.field == field


def test_shell_jobs_get_a_minimal_environment() -> None:
    worker_env = {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "TASKMESH_DATABASE_URL": "postgresql://secret",
        "TASKMESH_WORKER_PASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    env = process_environment({"TASKMESH_RUN_ID": "r", "TASKMESH_ATTEMPT": "1"}, {"GREETING": "hi"}, worker_env)
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "TASKMESH_RUN_ID": "r",
        "TASKMESH_ATTEMPT": "1",
        "GREETING": "hi",
    }
    assert process_environment({}, {}, {})["PATH"]


def test_every_value_of_a_stored_job_is_redacted() -> None:
    """Through a job row (protobuf JSON) as the API reads it, with many headers."""
    headers = {f"X-H{i}": f"secret-{i}" for i in range(8)}
    now = datetime.now(UTC)
    row = JobRecord(
        id="0190a4c2-0000-7000-8000-000000000001",
        name="n",
        description="",
        executor={"http": {"url": "http://x/", "headers": headers}},
        labels={},
        create_time=now,
        update_time=now,
    )
    assert dict(public_job(row).executor.http.headers) == {name: redaction.REDACTED for name in headers}
