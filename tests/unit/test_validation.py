import pytest
from google.protobuf.duration_pb2 import Duration

from api_server import validation
from api_server.servicers import _job_changes
from taskmesh.errors import InvalidArgument
from taskmesh.v1 import job_pb2


def _field_of(call: object) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()  # type: ignore[operator]
    return caught.value.field


def test_job_name_rules() -> None:
    assert validation.job_name("nightly-report_v2.1") == "nightly-report_v2.1"
    assert _field_of(lambda: validation.job_name("")) == "job.name"
    assert _field_of(lambda: validation.job_name("has space")) == "job.name"
    assert _field_of(lambda: validation.job_name("x" * 129)) == "job.name"


def test_executor_is_required() -> None:
    assert _field_of(lambda: validation.executor(job_pb2.Executor())) == "job.executor"


def test_sleep_seconds_bounds() -> None:
    ok = job_pb2.Executor(sleep=job_pb2.SleepExecutor(seconds=1.5))
    assert validation.executor(ok) is ok
    for seconds in (-1.0, 86_401.0, float("nan"), float("inf")):
        bad = job_pb2.Executor(sleep=job_pb2.SleepExecutor(seconds=seconds))
        assert _field_of(lambda bad=bad: validation.executor(bad)) == "job.executor.sleep.seconds"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (job_pb2.HttpExecutor(url=""), "job.executor.http.url"),
        (job_pb2.HttpExecutor(url="ftp://example.com"), "job.executor.http.url"),
        (job_pb2.HttpExecutor(url="/relative"), "job.executor.http.url"),
        (job_pb2.HttpExecutor(url="http://x", method="BREW"), "job.executor.http.method"),
        (job_pb2.HttpExecutor(url="http://x", headers={"bad header": "v"}), "job.executor.http.headers"),
        (job_pb2.HttpExecutor(url="http://x", timeout=Duration(seconds=0)), "job.executor.http.timeout"),
    ],
)
def test_http_executor_errors_name_the_field(spec: job_pb2.HttpExecutor, field: str) -> None:
    assert _field_of(lambda: validation.executor(job_pb2.Executor(http=spec))) == field


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (job_pb2.ShellExecutor(), "job.executor.shell.argv"),
        (job_pb2.ShellExecutor(argv=[""]), "job.executor.shell.argv"),
        (job_pb2.ShellExecutor(argv=["echo", "a\x00b"]), "job.executor.shell.argv"),
        (job_pb2.ShellExecutor(argv=["env"], env={"1BAD": "x"}), "job.executor.shell.env"),
    ],
)
def test_shell_executor_errors_name_the_field(spec: job_pb2.ShellExecutor, field: str) -> None:
    assert _field_of(lambda: validation.executor(job_pb2.Executor(shell=spec))) == field


def test_labels_rules() -> None:
    assert validation.labels({"team": "data"}) == {"team": "data"}
    assert _field_of(lambda: validation.labels({"Team": "x"})) == "job.labels.Team"
    assert _field_of(lambda: validation.labels({f"k{i}": "v" for i in range(65)})) == "job.labels"


def test_ids_must_be_uuids() -> None:
    assert validation.require_id("01A21A18-3BC8-7342-BA21-BAAE2F33716C") == "01a21a18-3bc8-7342-ba21-baae2f33716c"
    assert _field_of(lambda: validation.require_id("42")) == "id"
    assert _field_of(lambda: validation.require_id("", "job_id")) == "job_id"


def test_update_mask_selects_fields() -> None:
    job = job_pb2.Job(id="x", name="renamed", description="new words")
    changes = _job_changes(job, ["description"])
    assert changes.description == "new words"
    assert changes.name is None and changes.executor is None and changes.labels is None


def test_update_without_mask_takes_populated_fields() -> None:
    changes = _job_changes(job_pb2.Job(name="renamed"), [])
    assert changes.name == "renamed"
    assert changes.description is None


def test_update_mask_rejects_unknown_and_read_only_paths() -> None:
    assert _field_of(lambda: _job_changes(job_pb2.Job(), ["id"])) == "update_mask"
    assert _field_of(lambda: _job_changes(job_pb2.Job(), ["nonsense"])) == "update_mask"


def test_user_fields() -> None:
    assert _field_of(lambda: validation.username("bad name")) == "username"
    assert _field_of(lambda: validation.new_password("short")) == "password"
    assert _field_of(lambda: validation.role(0)) == "role"
