import pytest
from google.protobuf.duration_pb2 import Duration

from api_server import validation
from api_server.servicers import _job_changes
from taskmesh.service_errors import InvalidArgument
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


@pytest.mark.parametrize(
    "call",
    [
        lambda: validation.job_name("nightly\n"),
        lambda: validation.username("alice\n"),
        lambda: validation.labels({"team\n": "x"}),
        lambda: validation.executor(job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=["env"], env={"A\n": "1"}))),
        lambda: validation.executor(
            job_pb2.Executor(http=job_pb2.HttpExecutor(url="http://x", headers={"X-A\n": "v"}))
        ),
    ],
)
def test_a_trailing_newline_is_refused(call: object) -> None:
    with pytest.raises(InvalidArgument):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "value",
    [
        "urn:uuid:01a21a18-3bc8-7342-ba21-baae2f33716c",
        "{01a21a18-3bc8-7342-ba21-baae2f33716c}",
        "01a21a183bc87342ba21baae2f33716c",
        "01a21a18-3bc8-7342-ba21-baae2f33716c\n",
        " 01a21a18-3bc8-7342-ba21-baae2f33716c",
    ],
)
def test_ids_must_be_canonical_uuids(value: str) -> None:
    assert _field_of(lambda: validation.require_id(value)) == "id"


def _http(**fields: object) -> job_pb2.Executor:
    return job_pb2.Executor(http=job_pb2.HttpExecutor(**{"url": "http://x", **fields}))  # type: ignore[arg-type]


def _shell(**fields: object) -> job_pb2.Executor:
    return job_pb2.Executor(shell=job_pb2.ShellExecutor(**{"argv": ["true"], **fields}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_http(url="http://x/" + "a" * validation.MAX_URL), "job.executor.http.url"),
        (_http(url="http://x:99999/"), "job.executor.http.url"),
        (_http(headers={f"h{i}": "v" for i in range(validation.MAX_HEADERS + 1)}), "job.executor.http.headers"),
        (_http(headers={"h" * (validation.MAX_HEADER_NAME + 1): "v"}), "job.executor.http.headers"),
        (_http(headers={"X-A": "v" * (validation.MAX_HEADER_VALUE + 1)}), "job.executor.http.headers.X-A"),
        (_http(headers={"X-A": "a\r\nX-Injected: 1"}), "job.executor.http.headers.X-A"),
        (_http(headers={f"h{i}": "v" * 8000 for i in range(9)}), "job.executor.http.headers"),
        (_http(body="é" * (validation.MAX_BODY // 2 + 1)), "job.executor.http.body"),
        (_shell(argv=["x"] * (validation.MAX_ARGS + 1)), "job.executor.shell.argv"),
        (_shell(argv=["echo", "a" * (2 << 20)]), "job.executor.shell.argv"),
        (_shell(env={f"V{i}": "1" for i in range(validation.MAX_ENV + 1)}), "job.executor.shell.env"),
        (_shell(env={"V" * (validation.MAX_ENV_NAME + 1): "1"}), "job.executor.shell.env"),
        (_shell(env={"V": "1" * (validation.MAX_ENV_VALUE + 1)}), "job.executor.shell.env.V"),
        (_shell(env={f"V{i}": "1" * 30_000 for i in range(5)}), "job.executor.shell.env"),
    ],
)
def test_sizes_are_bounded_naming_the_field(spec: job_pb2.Executor, field: str) -> None:
    assert _field_of(lambda: validation.executor(spec)) == field


def test_sizes_at_the_bounds_are_accepted() -> None:
    validation.executor(_http(body="b" * validation.MAX_BODY, headers={"X-A": "v" * validation.MAX_HEADER_VALUE}))
    validation.executor(_shell(argv=["x"] * validation.MAX_ARGS, env={"V": "1" * validation.MAX_ENV_VALUE}))


def test_the_whole_job_is_bounded() -> None:
    big = job_pb2.Job(name="j", schedule=job_pb2.Schedule(cron=job_pb2.CronSchedule(timezone="x" * (3 << 20))))
    assert _field_of(lambda: validation.job_size(big)) == "job"
    validation.job_size(job_pb2.Job(name="j", executor=_http(body="b" * validation.MAX_BODY)))


def test_a_long_filter_is_refused() -> None:
    from taskmesh import listing

    with pytest.raises(InvalidArgument) as caught:
        listing.parse_filter("name = x AND " * 500 + "name = y", {"name": ("=",)})
    assert caught.value.field == "filter"


def test_pages_end_at_their_byte_budget() -> None:
    from taskmesh.listing import page_length

    assert page_length([10] * 5, limit=3, budget=100) == 3
    assert page_length([40] * 5, limit=10, budget=100) == 2
    assert page_length([500, 1], limit=10, budget=100) == 1  # one item always, however large
    assert page_length([], limit=10, budget=100) == 0


def test_request_strings_are_walked_at_every_depth() -> None:
    from taskmesh.rpc import requests
    from taskmesh.v1 import job_service_pb2

    request = job_service_pb2.CreateJobRequest(
        job=job_pb2.Job(
            name="j",
            labels={"team": "data"},
            executor=_http(headers={"Authorization": "Bearer x"}),
        )
    )
    found = dict(requests.strings(request))
    assert found["job.name"] == "j"
    assert found["job.labels.team"] == "data"
    assert found["job.executor.http.headers.Authorization"] == "Bearer x"
    assert found["job.executor.http.url"] == "http://x"
    requests.check_strings(request)
    for path, bad in [
        ("job.description", job_pb2.Job(description="a\x00b")),
        ("job.labels.team", job_pb2.Job(labels={"team": "a\x00"})),
        ("job.labels", job_pb2.Job(labels={"te\x00am": "a"})),
        ("job.executor.http.headers.X", job_pb2.Job(executor=_http(headers={"X": "\x00"}))),
        ("job.executor.shell.argv[1]", job_pb2.Job(executor=_shell(argv=["echo", "\x00"]))),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            requests.check_strings(job_service_pb2.CreateJobRequest(job=bad))
        assert caught.value.field == path
        decoded = requests.tolerant(job_service_pb2.CreateJobRequest.FromString)
        assert decoded is not None
        with pytest.raises(InvalidArgument) as caught:  # the same through the unary decoder
            requests.check(decoded(job_service_pb2.CreateJobRequest(job=bad).SerializeToString()))
        assert caught.value.field == path
