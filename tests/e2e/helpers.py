from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support import wait_for

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def create_job(api: httpx.Client, name: str, executor: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = api.post("/api/jobs", json={"name": unique(name), "executor": executor, **fields})
    assert response.status_code == 200, response.text
    return dict(response.json())


def trigger(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.post(f"/api/jobs/{job_id}/trigger")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_run_terminal(api: httpx.Client, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = api.get(f"/api/runs/{run_id}").json()
        return run if run.get("state") in TERMINAL else None

    return wait_for(finished, timeout=timeout, interval=0.1, message=f"run {run_id} to finish")


def gated_program(gate: Path, lines: int) -> list[str]:
    """A shell job that waits until `gate` exists (at most a minute), then prints `lines` lines."""
    code = (
        "import pathlib, sys, time\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "deadline = time.monotonic() + 60\n"
        "while not gate.exists():\n"
        "    if time.monotonic() > deadline:\n"
        "        sys.exit('the gate never opened')\n"
        "    time.sleep(0.02)\n"
        f"for i in range({lines}):\n"
        "    print('line', i, flush=True)\n"
    )
    return [sys.executable, "-c", code]
