"""Every command of `taskmesh` against the fake server, in-process: what it sends, what it
prints, and how it fails (one line on stderr, documented exit codes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from taskmesh.cli import errors
from taskmesh.v1 import job_pb2, job_service_pb2, run_pb2
from tests.support import free_port
from tests.unit.client_cli.cli import Result, run
from tests.unit.client_cli.fake import FakeTaskmesh

Invoke = Callable[..., Result]


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Invoke:
    def invoke(*args: str, stdin: str = "") -> Result:
        return run(list(args), cli_env, stdin)

    return invoke


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    assert result.err == ""
    return result


def test_jobs_create_prints_the_job(fake: FakeTaskmesh, cli: Invoke) -> None:
    result = ok(cli("jobs", "create", "hello", "--sleep", "2", "--label", "team=data", "--description", "hi"))
    job = next(iter(fake.state.jobs.values()))
    assert (job.name, job.executor.sleep.seconds, dict(job.labels)) == ("hello", 2, {"team": "data"})
    assert f"id:          {job.id}" in result.out and "executor:    sleep 2s" in result.out


def test_jobs_create_from_file_with_flag_overrides(fake: FakeTaskmesh, cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "filed", "executor": {"noop": {}}, "labels": {"a": "1"}}))
    created = json.loads(ok(cli("jobs", "create", "--from-file", str(path), "--every", "30s", "-o", "json")).out)
    assert created["name"] == "filed" and created["labels"] == {"a": "1"}
    assert created["schedule"]["interval"]["every"] == "30s"
    again = ok(cli("jobs", "create", "copy", "--from-file", "-", "-o", "json", stdin=json.dumps(created)))
    assert json.loads(again.out)["name"] == "copy"


def test_jobs_list_table_and_json(fake: FakeTaskmesh, cli: Invoke) -> None:
    jobs = [fake.add_job(f"job-{i}", labels={"team": "data"}) for i in range(3)]
    table = ok(cli("jobs", "list", "--page-size", "2")).out.splitlines()
    assert table[0].split() == ["ID", "NAME", "EXECUTOR", "SCHEDULE", "LABELS", "CREATED"]
    assert [line.split()[1] for line in table[1:]] == ["job-0", "job-1", "job-2"]
    listed = json.loads(ok(cli("jobs", "list", "-o", "json", "--limit", "2", "--page-size", "1")).out)
    assert [j["id"] for j in listed] == [j.id for j in jobs[:2]]
    assert len(fake.calls("ListJobs")) == 2 + 2  # the limit stopped the walk
    filtered = json.loads(ok(cli("jobs", "list", "-o", "json", "--filter", 'name="job-1"')).out)
    assert [j["name"] for j in filtered] == ["job-1"]


def test_jobs_get_by_name_or_id(fake: FakeTaskmesh, cli: Invoke) -> None:
    job = fake.add_job("nightly")
    assert json.loads(ok(cli("jobs", "get", "nightly", "-o", "json")).out)["id"] == job.id
    assert "name:     nightly" in ok(cli("jobs", "get", job.id)).out
    result = cli("jobs", "get", "missing")
    assert result.code == errors.API_ERROR
    assert result.error_line == "error: not found: no job named 'missing'"


def test_jobs_update_sends_a_mask_of_what_changed(fake: FakeTaskmesh, cli: Invoke) -> None:
    job = fake.add_job("u", labels={"a": "1"})
    result = ok(cli("jobs", "update", "u", "--description", "new", "--label", "b=2", "-o", "json"))
    request = fake.calls("UpdateJob")[0].request
    assert sorted(request.update_mask.paths) == ["description", "labels"]
    updated = json.loads(result.out)
    assert updated["description"] == "new" and updated["labels"] == {"a": "1", "b": "2"}
    ok(cli("jobs", "update", job.id, "--no-schedule"))
    assert list(fake.calls("UpdateJob")[1].request.update_mask.paths) == ["schedule"]
    nothing = cli("jobs", "update", "u")
    assert nothing.code == errors.USAGE and "nothing to update" in nothing.error_line


def test_jobs_delete_trigger_status(fake: FakeTaskmesh, cli: Invoke) -> None:
    job = fake.add_job("t")
    run_data = json.loads(ok(cli("jobs", "trigger", "t", "-o", "json")).out)
    assert run_data["state"] == "QUEUED" and run_data["jobId"] == job.id
    assert len(fake.calls("TriggerJob")[0].request.idempotency_key) == 32
    ok(cli("jobs", "trigger", "t", "--idempotency-key", "k1"))
    assert fake.calls("TriggerJob")[1].request.idempotency_key == "k1"
    status = ok(cli("jobs", "status", "t")).out
    assert "state:    QUEUED" in status
    status_json = json.loads(ok(cli("jobs", "status", "t", "-o", "json")).out)
    assert status_json["jobName"] == "t" and status_json["state"] == "QUEUED"
    assert ok(cli("jobs", "delete", "t")).out == f"deleted job {job.id}\n"
    assert fake.state.jobs == {}


def test_jobs_pause_resume_and_skipped_slots(fake: FakeTaskmesh, cli: Invoke) -> None:
    job = fake.add_job("p")
    job.schedule.CopyFrom(job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *")))
    assert "schedule: cron * * * * * (paused)" in ok(cli("jobs", "pause", "p")).out
    assert json.loads(ok(cli("jobs", "resume", "p", "-o", "json")).out)["paused"] is False
    fake.state.skipped[job.id] = [job_service_pb2.SkippedSlot(reason=job_service_pb2.SkippedSlot.OVERLAP)]
    table = ok(cli("jobs", "skipped-slots", "p")).out
    assert "OVERLAP" in table
    fake.state.skipped[job.id] *= 3
    listed = json.loads(ok(cli("jobs", "skipped-slots", "p", "--page-size", "2", "-o", "json")).out)
    assert len(listed) == 3
    assert [c.request.page_size for c in fake.calls("ListSkippedSlots")[-2:]] == [2, 2]


def test_runs_list_get_cancel_retry_logs(fake: FakeTaskmesh, cli: Invoke) -> None:
    job = fake.add_job("r")
    done = fake.add_run(job, run_pb2.Run.SUCCEEDED)
    queued = fake.add_run(job, run_pb2.Run.QUEUED)
    fake.add_run(fake.add_job("other"))
    listed = json.loads(ok(cli("runs", "list", "--job", "r", "-o", "json")).out)
    assert [r["id"] for r in listed] == [queued.id, done.id]
    succeeded = json.loads(ok(cli("runs", "list", "--job", "r", "--state", "succeeded", "-o", "json")).out)
    assert [r["id"] for r in succeeded] == [done.id]
    assert len(ok(cli("runs", "list")).out.splitlines()) == 1 + 3
    assert "state:   SUCCEEDED" in ok(cli("runs", "get", done.id)).out
    assert json.loads(ok(cli("runs", "cancel", queued.id, "-o", "json")).out)["state"] == "CANCELLED"
    refused = cli("runs", "cancel", done.id)
    assert refused.code == errors.API_ERROR and "failed precondition" in refused.error_line
    retried = json.loads(ok(cli("runs", "retry", done.id, "-o", "json")).out)
    assert retried["retriedFromRunId"] == done.id
    fake.state.logs[done.id] = [run_pb2.LogLine(attempt=1, text="hello"), run_pb2.LogLine(attempt=2, text="again")]
    assert ok(cli("runs", "logs", done.id, "--attempt", "2")).out.endswith("[2] again\n")


def test_runs_logs_reads_every_page(fake: FakeTaskmesh, cli: Invoke) -> None:
    done = fake.add_run(fake.add_job("r"), run_pb2.Run.FAILED)
    fake.state.logs[done.id] = [run_pb2.LogLine(attempt=1 + i // 5, text=f"line {i}") for i in range(10)]
    fake.state.truncated[done.id] = [2]
    lines = ok(cli("runs", "logs", done.id, "--page-size", "3")).out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:-1]] == [f"[{1 + i // 5}] line {i}" for i in range(10)]
    assert lines[-1] == "(output of attempt 2 was truncated at 1 MiB)"
    assert len(fake.calls("ListRunLogs")) == 4
    merged = json.loads(ok(cli("runs", "logs", done.id, "--attempt", "1", "--page-size", "2", "-o", "json")).out)
    assert [line["text"] for line in merged["lines"]] == [f"line {i}" for i in range(5)]
    assert merged["truncatedAttempts"] == [] and merged["nextPageToken"] == ""
    assert len(ok(cli("runs", "logs", done.id)).out.splitlines()) == 11  # the server's page size
    bad = cli("runs", "logs", done.id, "--attempt", "-2")
    assert bad.code == errors.USAGE and "--attempt" in bad.error_line


def _event(state: int, attempt: int = 1, **fields: object) -> job_service_pb2.RunEvent:
    return job_service_pb2.RunEvent(run=run_pb2.Run(state=state, attempt=attempt, **fields))


def _log(text: str) -> job_service_pb2.RunEvent:
    return job_service_pb2.RunEvent(log=run_pb2.LogLine(attempt=1, text=text))


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (run_pb2.Run.SUCCEEDED, errors.OK),
        (run_pb2.Run.FAILED, errors.RUN_FAILED),
        (run_pb2.Run.CANCELLED, errors.RUN_CANCELLED),
    ],
)
def test_runs_watch_follows_until_the_end_and_exits_by_state(
    fake: FakeTaskmesh, cli: Invoke, final: int, code: int
) -> None:
    run_ = fake.add_run(fake.add_job("w"), run_pb2.Run.QUEUED)
    fake.script_watch(
        run_.id,
        _event(run_pb2.Run.QUEUED),
        _event(run_pb2.Run.RUNNING, worker_id="w1"),
        _event(run_pb2.Run.RUNNING, worker_id="w1"),  # no change: not printed again
        _log("working"),
        _event(final),
    )
    result = cli("runs", "watch", run_.id)
    assert result.code == code and result.err == ""
    lines = [line.split(" ", 1)[1] for line in result.out.splitlines()]
    assert lines == [
        "QUEUED attempt 1",
        "RUNNING attempt 1 on w1",
        "[1] working",
        f"{run_pb2.Run.State.Name(final)} attempt 1",
    ]


def test_runs_watch_prints_earlier_lines_first_and_each_line_once(fake: FakeTaskmesh, cli: Invoke) -> None:
    run_ = fake.add_run(fake.add_job("w"), run_pb2.Run.RUNNING)
    earlier = [run_pb2.LogLine(attempt=1, text=text) for text in ("one", "two", "two")]
    for second, line in enumerate(earlier):
        line.time.FromSeconds(100 + second)
    fake.state.logs[run_.id] = earlier
    # The stream began before "two" (the second one) was stored: it comes in both.
    fake.script_watch(
        run_.id,
        _event(run_pb2.Run.RUNNING),
        job_service_pb2.RunEvent(log=earlier[2]),
        _log("three"),
        _event(run_pb2.Run.SUCCEEDED),
    )
    result = ok(cli("runs", "watch", run_.id))
    lines = [line.split(" ", 1)[1] for line in result.out.splitlines()]
    assert lines == ["RUNNING attempt 1", "[1] one", "[1] two", "[1] two", "[1] three", "SUCCEEDED attempt 1"]


def test_runs_watch_of_a_finished_run_prints_its_lines_then_how_it_ended(fake: FakeTaskmesh, cli: Invoke) -> None:
    run_ = fake.add_run(fake.add_job("w"), run_pb2.Run.FAILED)
    fake.state.logs[run_.id] = [run_pb2.LogLine(attempt=1, text="boom")]
    fake.script_watch(run_.id, _event(run_pb2.Run.FAILED))
    result = cli("runs", "watch", run_.id, "-o", "json")
    assert result.code == errors.RUN_FAILED
    events = [json.loads(line) for line in result.out.splitlines()]
    assert events == [{"log": {"attempt": 1, "text": "boom"}}, {"run": events[1]["run"]}]
    assert events[1]["run"]["state"] == "FAILED"


def test_runs_watch_json_is_one_event_per_line(fake: FakeTaskmesh, cli: Invoke) -> None:
    run_ = fake.add_run(fake.add_job("w"), run_pb2.Run.QUEUED)
    fake.script_watch(run_.id, _event(run_pb2.Run.RUNNING), _log("x"), _event(run_pb2.Run.FAILED))
    result = cli("runs", "watch", run_.id, "-o", "json")
    assert result.code == errors.RUN_FAILED
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [next(iter(e)) for e in events] == ["run", "log", "run"]
    assert events[-1]["run"]["state"] == "FAILED"


def test_runs_watch_that_ends_early_is_an_error(fake: FakeTaskmesh, cli: Invoke) -> None:
    run_ = fake.add_run(fake.add_job("w"), run_pb2.Run.QUEUED)
    fake.script_watch(run_.id, _event(run_pb2.Run.RUNNING))
    result = cli("runs", "watch", run_.id)
    assert result.code == errors.API_ERROR
    assert "ended while the run was RUNNING" in result.error_line


def test_users(fake: FakeTaskmesh, cli: Invoke) -> None:
    ok(cli("users", "create", "bob", "--role", "viewer", "--password-stdin", stdin="secret123\n"))
    assert fake.state.users["bob"] == ("secret123", 3)
    assert [line.split()[:2] for line in ok(cli("users", "list")).out.splitlines()[1:]] == [
        ["admin", "ADMIN"],
        ["bob", "VIEWER"],
    ]
    assert json.loads(ok(cli("users", "delete", "bob", "-o", "json")).out) == {"username": "bob", "deleted": True}


@pytest.mark.parametrize(
    ("method", "argv"),
    [
        ("PauseJob", ["jobs", "pause", "J"]),
        ("ResumeJob", ["jobs", "resume", "J"]),
        ("ListSkippedSlots", ["jobs", "skipped-slots", "J"]),
        ("CancelRun", ["runs", "cancel", "R"]),
        ("RetryRun", ["runs", "retry", "R"]),
        ("WatchRun", ["runs", "watch", "R"]),
        ("ListRunLogs", ["runs", "logs", "R"]),
    ],
)
def test_unimplemented_is_one_clear_line(fake: FakeTaskmesh, cli: Invoke, method: str, argv: list[str]) -> None:
    job = fake.add_job("j")
    run_ = fake.add_run(job, run_pb2.Run.QUEUED)
    fake.fail(method, grpc.StatusCode.UNIMPLEMENTED)
    result = cli(*[{"J": job.id, "R": run_.id}.get(a, a) for a in argv])
    assert result.code == errors.API_ERROR
    assert result.error_line.startswith("error: unimplemented: ")
    assert "does not support this command: is it older than this CLI?" in result.error_line


def test_invalid_argument_names_the_field(cli: Invoke) -> None:
    result = cli("jobs", "create", "--noop")
    assert result.code == errors.API_ERROR
    assert result.error_line == "error: invalid argument: job.name: is required"


def test_connection_refused_is_one_line_and_exit_3(cli_env: dict[str, str]) -> None:
    result = run(["jobs", "list", "--server", f"127.0.0.1:{free_port()}"], cli_env)
    assert result.code == errors.UNREACHABLE
    assert "unavailable" in result.error_line and "127.0.0.1" in result.error_line


def test_refused_token_says_where_it_came_from(fake: FakeTaskmesh, cli_env: dict[str, str]) -> None:
    result = run(["jobs", "list"], {**cli_env, "TASKMESH_TOKEN": "stale"})
    assert result.code == errors.API_ERROR
    assert "token from TASKMESH_TOKEN was refused" in result.error_line


def test_usage_errors_exit_2_in_one_line(cli: Invoke) -> None:
    for argv in (
        ["jobs"],
        ["jobs", "list", "--limit", "many"],
        ["runs", "get"],
        ["--timeout", "0", "jobs", "list"],
    ):
        result = cli(*argv)
        assert result.code == errors.USAGE, argv
        assert result.error_line


def test_help_exits_0(cli: Invoke) -> None:
    assert cli("--help").code == 0


def test_jobs_retention_flags_set_and_update_the_policy(fake: FakeTaskmesh, cli: Invoke) -> None:
    result = ok(cli("jobs", "create", "kept", "--noop", "--keep-succeeded", "14d", "--keep-logs", "0s"))
    job = next(iter(fake.state.jobs.values()))
    assert job.retention.succeeded.seconds == 14 * 86400 and job.retention.HasField("logs")
    assert not job.retention.HasField("failed")
    assert "retention:" in result.out and "succeeded 336h" in result.out and "logs forever" in result.out
    ok(cli("jobs", "update", "kept", "--keep-failed", "90d"))
    assert list(fake.calls("UpdateJob")[0].request.update_mask.paths) == ["retention"]


def test_flow_control_flags_set_the_job_and_the_trigger(fake: FakeTaskmesh, cli: Invoke) -> None:
    ok(
        cli(
            "jobs", "create", "export", "--noop", "--priority", "7", "--concurrency-limit", "2",
            "--concurrency-key", "exports-{{ job.name }}", "--on-limit", "cancel-oldest",
            "--rate-limit", "20/10s", "--rate-limit-key", "partner",
        )
    )  # fmt: skip
    job = next(iter(fake.state.jobs.values()))
    assert job.priority == 7
    assert (job.concurrency.key, job.concurrency.limit) == ("exports-{{ job.name }}", 2)
    assert job.concurrency.on_limit == job_pb2.ConcurrencyLimit.CANCEL_OLDEST
    assert (job.rate_limit.key, job.rate_limit.limit, job.rate_limit.period.seconds) == ("partner", 20, 10)
    ok(cli("jobs", "trigger", job.id, "--priority", "9"))
    (call,) = fake.calls("TriggerJob")
    assert call.request.HasField("priority") and call.request.priority == 9
    bad = cli("jobs", "create", "other", "--noop", "--rate-limit", "twenty")
    assert bad.code != 0 and "--rate-limit" in bad.err
