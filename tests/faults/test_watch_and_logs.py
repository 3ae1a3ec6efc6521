"""Live watch (NDJSON through the gateway) and logs read after the fact."""

import json
import sys
import threading

import httpx

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers


def test_watch_streams_state_changes_and_log_lines_as_they_happen(api: httpx.Client, fault_mesh: Mesh) -> None:
    ensure_workers(fault_mesh)
    script = "for i in 1 2 3; do echo line-$i; sleep 0.3; done"
    job = create_job(api, "watched", {"shell": {"argv": ["sh", "-c", script]}})
    run = trigger(api, job["id"])
    events: list[dict] = []
    with api.stream("GET", f"/api/runs/{run['id']}/watch", timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    # the stream ended by itself when the run finished
    states = [e["run"]["state"] for e in events if "run" in e]
    logs = [e["log"]["text"] for e in events if "log" in e]
    assert states[0] in ("QUEUED", "RUNNING")
    assert states[-1] == "SUCCEEDED"
    assert "RUNNING" in states
    assert logs == ["line-1", "line-2", "line-3"]
    versions = [e["run"]["version"] for e in events if "run" in e]
    assert versions == sorted(set(versions))  # in order, no duplicates


def test_watch_of_a_finished_run_returns_its_final_state_and_ends(api: httpx.Client, fault_mesh: Mesh) -> None:
    job = create_job(api, "done", {"noop": {}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    response = api.get(f"/api/runs/{run['id']}/watch", timeout=10)
    events = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert [e["run"]["state"] for e in events] == ["SUCCEEDED"]


def test_logs_are_kept_per_attempt_and_capped(api: httpx.Client, fault_mesh: Mesh) -> None:
    # ~1.2 MiB of output: past the 1 MiB cap the attempt is marked truncated
    script = "for i in range(1300): print(str(i).zfill(1000))\nprint('done')"
    job = create_job(api, "chatty", {"shell": {"argv": [sys.executable, "-c", script]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=60)
    assert run["state"] == "SUCCEEDED"
    assert run["attempt"] == 1, [a.get("error") for a in run["attempts"]]
    kept: list[dict] = []
    token = ""
    while True:
        page = api.get(f"/api/runs/{run['id']}/logs", params={"pageSize": 400, "pageToken": token}).json()
        assert page["truncatedAttempts"] == [1]
        assert len(page["lines"]) <= 400
        kept += page["lines"]
        token = page["nextPageToken"]
        if not token:
            break
    # the first lines, in order, then the one line saying the rest was cut (added on the worker)
    *numbered, marker = kept
    assert 1000 <= len(numbered) < 1300
    assert [int(line["text"]) for line in numbered] == list(range(len(numbered)))
    assert "output truncated" in marker["text"]
    assert all(line["attempt"] == 1 for line in kept)
    assert sum(len(line["text"]) for line in kept) <= 1 << 20


def test_a_watch_survives_many_concurrent_watchers(api: httpx.Client, fault_mesh: Mesh) -> None:
    job = create_job(api, "popular", {"sleep": {"seconds": 1}})
    run = trigger(api, job["id"])
    finals: list[str] = []

    def watch() -> None:
        with api.stream("GET", f"/api/runs/{run['id']}/watch", timeout=60) as response:
            last = None
            for line in response.iter_lines():
                if line.strip() and "run" in (event := json.loads(line)):
                    last = event["run"]["state"]
            finals.append(str(last))

    threads = [threading.Thread(target=watch) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert finals == ["SUCCEEDED"] * 10
