from __future__ import annotations

import uuid
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
