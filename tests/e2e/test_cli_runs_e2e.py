"""`taskmesh runs` and `jobs trigger` as a subprocess against the live mesh: idempotent
triggers, cancel, retry, watch (exit codes, live and earlier log lines, JSON events) and logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taskmesh.client import TaskmeshClient
from taskmesh.v1 import run_pb2
from tests.e2e.cli import Taskmesh, as_json, error_line, fields, ok
from tests.e2e.helpers import gated_program, unique
from tests.support import wait_for

RUNNING = run_pb2.Run.RUNNING


def wait_state(client: TaskmeshClient, run_id: str, *states: int) -> run_pb2.Run:
    def reached() -> run_pb2.Run | None:
        run = client.get_run(run_id)
        return run if run.state in states else None

    names = [run_pb2.Run.State.Name(state) for state in states]
    return wait_for(reached, timeout=60, interval=0.1, message=f"run {run_id} to be one of {names}")


def trigger(taskmesh: Taskmesh, job: str) -> str:
    return str(as_json(taskmesh("jobs", "trigger", job, "-o", "json"))["id"])


def test_trigger_with_the_same_idempotency_key_returns_the_same_run(taskmesh: Taskmesh) -> None:
    name = unique("cli-idem")
    ok(taskmesh("jobs", "create", name, "--noop"))
    first = as_json(taskmesh("jobs", "trigger", name, "--idempotency-key", "k", "-o", "json"))
    again = fields(ok(taskmesh("jobs", "trigger", name, "--idempotency-key", "k")))
    assert first["idempotencyKey"] == "k" and (again["id"], again["idempotency key"]) == (first["id"], "k")
    other = as_json(taskmesh("jobs", "trigger", name, "--idempotency-key", "k2", "-o", "json"))
    assert other["id"] != first["id"]
    runs = as_json(taskmesh("runs", "list", "--job", name, "-o", "json"))
    assert sorted(r["id"] for r in runs) == sorted([first["id"], other["id"]])


def test_trigger_count_starts_that_many_runs_in_one_call(taskmesh: Taskmesh) -> None:
    name = unique("cli-count")
    ok(taskmesh("jobs", "create", name, "--noop"))
    runs = as_json(taskmesh("jobs", "trigger", name, "--count", "5", "-o", "json"))
    assert len(runs) == 5 and len({r["id"] for r in runs}) == 5
    assert taskmesh("jobs", "trigger", name, "--count", "0").returncode == 2
    assert taskmesh("jobs", "trigger", name, "--count", "3", "--idempotency-key", "k").returncode == 2


def test_cancel_a_sleeping_run_then_a_finished_one(taskmesh: Taskmesh, admin_client: TaskmeshClient) -> None:
    name = unique("cli-cancel")
    ok(taskmesh("jobs", "create", name, "--sleep", "60"))
    run_id = trigger(taskmesh, name)
    wait_state(admin_client, run_id, RUNNING)
    active = taskmesh("runs", "retry", run_id)
    assert active.returncode == 1 and "failed precondition" in error_line(active)
    cancelled = as_json(taskmesh("runs", "cancel", run_id, "-o", "json"))
    assert cancelled["state"] in ("CANCELLING", "CANCELLED") and cancelled["cancelTime"]
    run = wait_state(admin_client, run_id, run_pb2.Run.CANCELLED, run_pb2.Run.FAILED, run_pb2.Run.SUCCEEDED)
    assert run_pb2.Run.State.Name(run.state) == "CANCELLED"
    shown = fields(ok(taskmesh("runs", "get", run_id)))
    assert shown["state"] == "CANCELLED" and shown["cancelled at"] != "-"

    again = taskmesh("runs", "cancel", run_id)
    assert again.returncode == 1
    assert error_line(again) == (
        f"error: failed precondition: run {run_id} is CANCELLED; only active runs can be cancelled"
    )


def test_retry_a_failed_run(taskmesh: Taskmesh, admin_client: TaskmeshClient) -> None:
    name = unique("cli-retry")
    ok(taskmesh("jobs", "create", name, "--max-attempts", "1", "--shell", "--", sys.executable, "-c", "exit(3)"))
    failed_id = trigger(taskmesh, name)
    failed = wait_state(admin_client, failed_id, run_pb2.Run.FAILED, run_pb2.Run.SUCCEEDED)
    assert failed.result.shell.exit_code == 3, failed

    retried = as_json(taskmesh("runs", "retry", failed_id, "-o", "json"))
    assert retried["id"] != failed_id and retried["retriedFromRunId"] == failed_id
    assert (retried["jobId"], retried["trigger"], retried["attempt"]) == (failed.job_id, "RETRY", 1)
    assert fields(ok(taskmesh("runs", "get", retried["id"])))["retried from"] == failed_id
    assert wait_state(admin_client, retried["id"], run_pb2.Run.FAILED).attempt == 1


def test_watch_prints_live_log_lines_and_exits_0(
    taskmesh: Taskmesh, admin_client: TaskmeshClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    name = unique("cli-watch")
    ok(taskmesh("jobs", "create", name, "--shell", "--", *gated_program(gate, 3)))
    run_id = trigger(taskmesh, name)
    watch = taskmesh.background("runs", "watch", run_id)
    first = watch.wait_line(lambda line: "QUEUED" in line or "RUNNING" in line)
    wait_state(admin_client, run_id, RUNNING)
    gate.touch()  # only now does the job print: its lines come through the stream
    code, lines, stderr = watch.finish()
    assert (code, stderr) == (0, ""), lines
    assert [line.split(" ", 1)[1] for line in lines if "[1]" in line] == [f"[1] line {i}" for i in range(3)]
    assert lines[0] == first and lines[-1].endswith("SUCCEEDED attempt 1")

    # Watching a finished run prints the lines it wrote, then how it ended.
    code, lines, stderr = taskmesh.background("runs", "watch", run_id).finish()
    assert code == 0 and [line.split(" ", 1)[1] for line in lines[:-1]] == [f"[1] line {i}" for i in range(3)]
    assert lines[-1].endswith("SUCCEEDED attempt 1")


def test_watch_exits_4_when_the_run_fails(taskmesh: Taskmesh, target_server: tuple[str, dict[str, int]]) -> None:
    base, _ = target_server
    name = unique("cli-watch-fail")
    ok(taskmesh("jobs", "create", name, "--http-url", f"{base}/fail-watch", "--max-attempts", "1"))
    result = taskmesh("runs", "watch", trigger(taskmesh, name))
    assert result.returncode == 4, result.stderr
    assert result.stderr == "" and "FAILED attempt 1: EXECUTOR_FAILED" in result.stdout.splitlines()[-1]


def test_watch_exits_5_when_another_process_cancels_the_run(
    taskmesh: Taskmesh, admin_client: TaskmeshClient
) -> None:
    name = unique("cli-watch-cancel")
    ok(taskmesh("jobs", "create", name, "--sleep", "60"))
    run_id = trigger(taskmesh, name)
    wait_state(admin_client, run_id, RUNNING)
    watch = taskmesh.background("runs", "watch", run_id, "-o", "json")
    watch.wait_line(lambda line: '"RUNNING"' in line)
    ok(taskmesh("runs", "cancel", run_id))
    code, lines, stderr = watch.finish()
    assert (code, stderr) == (5, "")
    events = [json.loads(line) for line in lines]  # one JSON event per line
    assert all(list(event) == ["run"] and event["run"]["id"] == run_id for event in events)
    states = [event["run"]["state"] for event in events]
    assert states[0] == "RUNNING" and states[-1] == "CANCELLED"
    versions = [event["run"]["version"] for event in events]
    assert versions == sorted(set(versions))


def test_logs_of_every_attempt_of_one_attempt_and_over_several_pages(
    taskmesh: Taskmesh, admin_client: TaskmeshClient
) -> None:
    program = (
        "import os, sys\n"
        "attempt = int(os.environ['TASKMESH_ATTEMPT'])\n"
        "for i in range(3 if attempt == 1 else 1500):\n"
        "    print(f'attempt {attempt} line {i}')\n"
        "sys.exit(1 if attempt == 1 else 0)\n"
    )
    name = unique("cli-logs")
    ok(
        taskmesh(
            "jobs", "create", name, "--max-attempts", "2", "--initial-backoff", "100ms", "--max-backoff", "100ms",
            "--shell", "--", sys.executable, "-c", program,
        )
    )  # fmt: skip
    run_id = trigger(taskmesh, name)
    run = wait_state(admin_client, run_id, run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED)
    assert (run_pb2.Run.State.Name(run.state), run.attempt) == ("SUCCEEDED", 2)

    first = [f"[1] attempt 1 line {i}" for i in range(3)]
    second = [f"[2] attempt 2 line {i}" for i in range(1500)]
    every = ok(taskmesh("runs", "logs", run_id)).splitlines()  # 1000 lines a page by default
    assert [line.split(" ", 1)[1] for line in every] == first + second
    one = ok(taskmesh("runs", "logs", run_id, "--attempt", "1")).splitlines()
    assert [line.split(" ", 1)[1] for line in one] == first
    paged = as_json(taskmesh("runs", "logs", run_id, "--attempt", "2", "--page-size", "400", "-o", "json"))
    assert [f"[{line['attempt']}] {line['text']}" for line in paged["lines"]] == second
    assert paged["truncatedAttempts"] == [] and paged["nextPageToken"] == ""
    none = taskmesh("runs", "logs", run_id, "--attempt", "-1")
    assert none.returncode == 2 and "--attempt" in error_line(none)
