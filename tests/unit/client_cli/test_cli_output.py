"""Tables and JSON the CLI prints."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.cli import output
from taskmesh.client import builders
from taskmesh.v1 import job_pb2, run_pb2


def ts(text: str) -> Timestamp:
    return builders.timestamp(text)


def test_table_aligns_columns() -> None:
    text = output.table(("ID", "NAME"), [("1", "short"), ("1234", "x")])
    assert text.splitlines() == ["ID    NAME", "1     short", "1234  x"]


def test_fields_skip_empty_values() -> None:
    assert output.fields([("id", "1"), ("description", ""), ("created", "-"), ("name", "n")]) == "id:   1\nname: n"


def test_scalars() -> None:
    assert [output.seconds_text(s) for s in (0.5, 2, 90, 7200, 3661)] == ["0.5s", "2s", "1m30s", "2h", "1h1m1s"]
    assert output.time_text(ts("2030-01-02T03:04:05.678Z")) == "2030-01-02T03:04:05Z"
    assert output.time_text(Timestamp()) == "-"


def test_job_summaries() -> None:
    job = job_pb2.Job(name="j", executor=builders.http("https://x", method="post"), labels={"b": "2", "a": "1"})
    assert output.executor_text(job.executor) == "http POST https://x"
    assert output.executor_text(builders.shell(["make", "all"])) == "shell make all"
    assert output.schedule_text(job) == "manual"
    job.schedule.CopyFrom(builders.cron("*/5 * * * *", "Europe/Berlin"))
    job.paused = True
    assert output.schedule_text(job) == "cron */5 * * * * (Europe/Berlin) (paused)"
    assert output.labels_text(job.labels) == "a=1,b=2"
    row = output.jobs_table([job]).splitlines()[1]
    assert "http POST https://x" in row and "a=1,b=2" in row
    assert "policy" not in output.job_fields(job)  # unset policies are not shown
    job.schedule.misfire_policy = job_pb2.Schedule.FIRE_ALL
    job.schedule.overlap_policy = job_pb2.Schedule.FORBID
    block = output.job_fields(job)
    assert "misfire policy: fire-all" in block and "overlap policy: forbid" in block


def test_json_prints_zero_values_like_the_rest_api() -> None:
    data = output.to_dict(run_pb2.Run(id="r", state=run_pb2.Run.QUEUED))
    assert data["state"] == "QUEUED" and data["attempt"] == 0 and data["jobId"] == ""


def test_run_rendering() -> None:
    run = run_pb2.Run(
        id="r",
        job_id="j",
        job_name="nightly",
        state=run_pb2.Run.FAILED,
        attempt=2,
        start_time=ts("2030-01-01T00:00:00Z"),
        finish_time=ts("2030-01-01T00:01:30Z"),
        error=run_pb2.RunError(kind=run_pb2.RunError.TIMEOUT, message="took too long", retryable=True),
        attempts=[run_pb2.Attempt(attempt=1, state=run_pb2.Run.FAILED, worker_id="w1")],
    )
    block = output.run_fields(run)
    assert "job:      nightly (j)" in block and "took:     1m30s" in block
    assert "error:    TIMEOUT: took too long" in block
    assert "ATTEMPT  STATE   WORKER" in block
    assert output.run_event_text(run) == "00:01:30 FAILED attempt 2: TIMEOUT: took too long"
    row = output.runs_table([run]).splitlines()[1].split()
    assert row[:4] == ["r", "nightly", "FAILED", "2"]


def test_watch_lines_show_when_each_state_began() -> None:
    queued = run_pb2.Run(state=run_pb2.Run.QUEUED, attempt=1, queue_time=ts("2030-01-01T00:00:00Z"))
    running = run_pb2.Run(
        state=run_pb2.Run.RUNNING, attempt=1, worker_id="w1", queue_time=queued.queue_time,
        start_time=ts("2030-01-01T00:00:01Z"),
    )  # fmt: skip
    waiting = run_pb2.Run(
        state=run_pb2.Run.RETRY_WAIT, attempt=1, queue_time=queued.queue_time, start_time=running.start_time,
        retry_time=ts("2030-01-01T00:00:09Z"),
        attempts=[run_pb2.Attempt(attempt=1, finish_time=ts("2030-01-01T00:00:04Z"))],
    )  # fmt: skip
    requeued = run_pb2.Run(state=run_pb2.Run.QUEUED, attempt=2, queue_time=queued.queue_time)
    cancelling = run_pb2.Run(state=run_pb2.Run.CANCELLING, attempt=2, cancel_time=ts("2030-01-01T00:00:12Z"))
    lines = [
        output.run_event_text(queued),
        output.run_event_text(running, queued),
        output.run_event_text(waiting, running),
        output.run_event_text(requeued, waiting),
        output.run_event_text(requeued),  # the watch began there: when it was queued is unknown
        output.run_event_text(cancelling, requeued),
    ]
    assert lines == [
        "00:00:00 QUEUED attempt 1",
        "00:00:01 RUNNING attempt 1 on w1",
        "00:00:04 RETRY_WAIT attempt 1, next attempt at 2030-01-01T00:00:09Z",
        "00:00:09 QUEUED attempt 2",
        "--:--:-- QUEUED attempt 2",
        "00:00:12 CANCELLING attempt 2",
    ]


def test_log_lines_and_truncation_notes() -> None:
    line = run_pb2.LogLine(attempt=1, time=ts("2030-01-01T00:00:00Z"), text="hello")
    assert output.log_line(line) == "2030-01-01T00:00:00Z [1] hello"
    assert output.truncation_notes([1, 3]).splitlines() == [
        "(output of attempt 1 was truncated at 1 MiB)",
        "(output of attempt 3 was truncated at 1 MiB)",
    ]
    assert output.truncation_notes([]) == ""
