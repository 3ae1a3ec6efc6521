"""Finding 7: the per-attempt output cap (1 MiB) is enforced on the worker, so a job printing
100 MB costs the scheduler no memory beyond it: the stored log is capped, ends with one marker
line, the attempt is marked truncated, and the scheduler's memory stays flat."""

from __future__ import annotations

import sys
from typing import Any

import httpx

from taskmesh.launcher import Mesh
from taskmesh.limits import MAX_LOG_BYTES_PER_ATTEMPT
from tests.e2e.helpers import create_job, trigger, wait_run_terminal

OUTPUT_BYTES = 100 * 1000 * 1000
MAX_GROWTH_KB = 50 * 1024


def _printer(total: int, line_bytes: int = 1000) -> list[str]:
    code = (
        "import sys\n"
        f"block = (b'y' * {line_bytes - 1} + b'\\n') * 64\n"
        f"for _ in range({total} // len(block)):\n"
        "    sys.stdout.buffer.write(block)\n"
    )
    return [sys.executable, "-c", code]


def _memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in kB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def _all_lines(api: httpx.Client, run_id: str) -> tuple[list[dict[str, Any]], list[int]]:
    lines: list[dict[str, Any]] = []
    token = ""
    while True:
        page = api.get(f"/api/runs/{run_id}/logs", params={"pageSize": 200, "pageToken": token})
        assert page.status_code == 200, page.text
        body = page.json()
        lines += body.get("lines", [])
        token = body.get("nextPageToken", "")
        if not token:
            return lines, [int(a) for a in body.get("truncatedAttempts", [])]


def test_a_job_printing_100_mb_keeps_the_scheduler_flat(api: httpx.Client, mesh: Mesh) -> None:
    scheduler = mesh.processes["scheduler"].pid
    warmup = create_job(api, "output-warmup", {"shell": {"argv": _printer(200_000)}})
    assert wait_run_terminal(api, trigger(api, warmup["id"])["id"], timeout=60)["state"] == "SUCCEEDED"
    before = _memory_kb(scheduler)

    job = create_job(api, "output-flood", {"shell": {"argv": _printer(OUTPUT_BYTES)}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=180)
    assert run["state"] == "SUCCEEDED"  # the process was drained to its end, never blocked
    after = _memory_kb(scheduler)
    assert after["VmRSS"] - before["VmRSS"] < MAX_GROWTH_KB, (before, after)
    assert after["VmHWM"] - before["VmHWM"] < MAX_GROWTH_KB, (before, after)

    lines, truncated = _all_lines(api, run["id"])
    assert truncated == [1]
    assert sum(len(line["text"].encode()) for line in lines) <= MAX_LOG_BYTES_PER_ATTEMPT
    assert len(lines) > 900  # the first lines are kept ...
    assert "output truncated" in lines[-1]["text"]  # ... then one marker line
    assert sum("output truncated" in line["text"] for line in lines) == 1
