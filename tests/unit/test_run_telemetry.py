"""api_server.run_telemetry: runs a trigger skipped are counted and logged as finished runs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from api_server.run_telemetry import CancelObserver
from taskmesh.records import RunRecord
from taskmesh.states import RunState, Trigger


def _finished(state: str) -> float:
    value = REGISTRY.get_sample_value("taskmesh_runs_finished_total", {"state": state, "executor": "none"})
    return value or 0.0


def test_a_skipped_run_counts_as_finished_and_its_log_line_says_why(caplog: pytest.LogCaptureFixture) -> None:
    message = "SKIPPED: key k has 1 of 1 active (on_limit SKIP)"
    run = RunRecord(
        "r1",
        "j1",
        "job",
        RunState.CANCELLED,
        1,
        Trigger.MANUAL,
        2,
        datetime.now(UTC),
        error={"kind": "NOT_ADMITTED", "message": message, "retryable": False},
    )
    before = _finished("CANCELLED")
    with caplog.at_level(logging.INFO, logger="api_server.run_telemetry"):
        CancelObserver().skipped([run])
    assert _finished("CANCELLED") == before + 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("run skipped")]
    assert message in record.getMessage() and record.run_id == "r1"  # type: ignore[attr-defined]
