"""The real `taskmesh` console script, run as a subprocess against the live gateway."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

from tests.e2e.cli import Taskmesh, as_json, cli_env, error_line, fields, ok
from tests.e2e.helpers import TERMINAL, unique
from tests.support import free_port, wait_for


def wait_finished(taskmesh: Taskmesh, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = as_json(taskmesh("runs", "get", run_id, "-o", "json"))
        return run if run["state"] in TERMINAL else None

    return wait_for(finished, timeout=60, interval=0.2, message=f"run {run_id} to finish")


def test_login_writes_a_private_config_that_later_commands_use(gateway: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    run = Taskmesh(cli_env(gateway, config))
    assert "no token" in error_line(run("jobs", "list"))
    out = ok(run("login", "-u", "admin", "--password-stdin", stdin="admin\n"))
    assert f"logged in to {gateway} as admin" in out
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["server"] == gateway and stored["token"].count(".") == 2  # a JWT
    assert isinstance(as_json(run("jobs", "list", "-o", "json")), list)
    wrong = run("login", "-u", "admin", "--password", "wrong")
    assert wrong.returncode == 1 and "wrong username or password" in error_line(wrong)


def test_job_lifecycle(taskmesh: Taskmesh) -> None:
    name, marker = unique("cli"), unique("batch")
    created = as_json(
        taskmesh(
            "jobs", "create", name, "--noop", "--label", f"batch={marker}", "--description", "one", "-o", "json"
        )
    )
    assert created["name"] == name and created["executor"] == {"noop": {}}
    assert created["labels"] == {"batch": marker}

    shown = fields(ok(taskmesh("jobs", "get", name)))
    assert shown["id"] == created["id"] and shown["executor"] == "noop" and shown["labels"] == f"batch={marker}"
    assert as_json(taskmesh("jobs", "get", created["id"], "-o", "json"))["description"] == "one"

    listed = ok(taskmesh("jobs", "list", "--filter", f"labels.batch={marker}")).splitlines()
    assert listed[0].split()[:3] == ["ID", "NAME", "EXECUTOR"]
    assert [line.split()[1] for line in listed[1:]] == [name]

    updated = as_json(
        taskmesh("jobs", "update", name, "--description", "two", "--sleep", "0.1", "--label", "x=y", "-o", "json")
    )
    assert updated["description"] == "two" and updated["executor"] == {"sleep": {"seconds": 0.1}}
    assert updated["labels"] == {"batch": marker, "x": "y"}

    run = as_json(taskmesh("jobs", "trigger", name, "-o", "json"))
    assert run["jobId"] == created["id"] and run["state"] in {"QUEUED", "RUNNING", "SUCCEEDED"}
    assert wait_finished(taskmesh, run["id"])["state"] == "SUCCEEDED"
    assert fields(ok(taskmesh("runs", "get", run["id"])))["state"] == "SUCCEEDED"

    status = as_json(taskmesh("jobs", "status", name, "-o", "json"))
    assert status["state"] == "SUCCEEDED" and status["lastRun"]["id"] == run["id"]
    assert fields(ok(taskmesh("jobs", "status", name)))["last run"] == run["id"]

    assert ok(taskmesh("jobs", "delete", name)) == f"deleted job {created['id']}\n"
    gone = taskmesh("jobs", "get", created["id"])
    assert gone.returncode == 1 and "not found" in error_line(gone)


def test_runs_list_newest_first_in_json_and_table(taskmesh: Taskmesh) -> None:
    name = unique("cli-runs")
    ok(taskmesh("jobs", "create", name, "--noop"))
    run_ids = [as_json(taskmesh("jobs", "trigger", name, "-o", "json"))["id"] for _ in range(3)]
    for run_id in run_ids:
        wait_finished(taskmesh, run_id)
    listed = as_json(taskmesh("runs", "list", "--job", name, "-o", "json"))
    assert [r["id"] for r in listed] == list(reversed(run_ids))
    limited = as_json(
        taskmesh("runs", "list", "--job", name, "--state", "SUCCEEDED", "--limit", "2", "-o", "json")
    )
    assert [r["id"] for r in limited] == list(reversed(run_ids))[:2]
    table = ok(taskmesh("runs", "list", "--job", name)).splitlines()
    assert table[0].split() == ["ID", "JOB", "STATE", "ATTEMPT", "TRIGGER", "QUEUED", "TOOK"]
    assert [line.split()[0] for line in table[1:]] == list(reversed(run_ids))
    assert all(line.split()[2] == "SUCCEEDED" for line in table[1:])
    everywhere = as_json(taskmesh("runs", "list", "--limit", "500", "-o", "json"))
    assert set(run_ids) <= {r["id"] for r in everywhere}


def test_shell_job_from_flags_after_double_dash(taskmesh: Taskmesh) -> None:
    name = unique("cli-shell")
    created = as_json(
        taskmesh(
            "jobs", "create", name, "--shell", "--shell-env", "GREETING=hi there", "-o", "json",
            "--", sys.executable, "-c", "import os; print(os.environ['GREETING'])",
        )
    )  # fmt: skip
    assert created["executor"]["shell"]["argv"][1:] == ["-c", "import os; print(os.environ['GREETING'])"]
    run = wait_finished(taskmesh, as_json(taskmesh("jobs", "trigger", name, "-o", "json"))["id"])
    assert run["state"] == "SUCCEEDED", run
    assert "hi there" in run["result"]["shell"]["outputExcerpt"]


def test_http_job_from_file(taskmesh: Taskmesh, target_server: tuple[str, dict[str, int]], tmp_path: Path) -> None:
    base, hits = target_server
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": unique("cli-http"), "executor": {"http": {"url": f"{base}/cli-file"}}}))
    created = as_json(taskmesh("jobs", "create", "--from-file", str(path), "--http-timeout", "5s", "-o", "json"))
    assert created["executor"]["http"]["timeout"] == "5s"
    run = wait_finished(taskmesh, as_json(taskmesh("jobs", "trigger", created["id"], "-o", "json"))["id"])
    assert run["state"] == "SUCCEEDED" and run["result"]["http"]["statusCode"] == 200
    assert hits["/cli-file"] >= 1


def test_bad_requests_are_one_clear_line(taskmesh: Taskmesh) -> None:
    bad_name = taskmesh("jobs", "create", "bad name!", "--noop")
    assert bad_name.returncode == 1
    assert error_line(bad_name).startswith("error: invalid argument: job.name: ")
    no_executor = taskmesh("jobs", "create", unique("cli-bad"))
    assert "job.executor: is required" in error_line(no_executor)
    bad_id = taskmesh("runs", "get", "not-a-uuid")
    assert bad_id.returncode == 1 and "invalid argument: id: must be a UUID" in error_line(bad_id)
    bad_filter = taskmesh("jobs", "list", "--filter", "colour=red")
    assert bad_filter.returncode == 1 and "invalid argument: filter: unknown field" in error_line(bad_filter)
    usage = taskmesh("jobs", "create", "x", "--every", "soon")
    assert usage.returncode == 2 and "--every" in error_line(usage)


def test_refused_token_and_unreachable_server(taskmesh: Taskmesh, gateway: str, tmp_path: Path) -> None:
    run = Taskmesh(cli_env(gateway, tmp_path / "none.json"))
    refused = run("jobs", "list", "--token", "not.a.jwt")
    assert refused.returncode == 1 and "unauthenticated" in error_line(refused)
    down = run("jobs", "list", "--server", f"127.0.0.1:{free_port()}", "--token", "x")
    assert down.returncode == 3 and "unavailable" in error_line(down)
