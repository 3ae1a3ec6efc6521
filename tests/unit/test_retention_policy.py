"""The retention rule (taskmesh.retention_policy), Job.retention's validation and round trip,
and the sweeper's walk over windows (against a fake repository)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration

from api_server import validation
from api_server.servicers import _job_changes, _update_paths
from scheduler.maintenance import RetentionSettings, RetentionSweeper
from taskmesh import retention_policy
from taskmesh.convert import job_to_proto, to_json
from taskmesh.db.run_purge import RunCursor, RunPurgeRepository, Window
from taskmesh.records import JobRecord, Replacement
from taskmesh.retention_policy import Retention, RunFacts
from taskmesh.service_errors import InvalidArgument
from taskmesh.settings import Settings
from taskmesh.states import RunState
from taskmesh.v1 import job_pb2, retention_pb2

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
DEFAULTS = Retention(succeeded=7 * DAY, failed=30 * DAY, cancelled=30 * DAY, logs=7 * DAY)


def _run(state: RunState = RunState.SUCCEEDED, age: timedelta = 8 * DAY, **keeps: bool) -> RunFacts:
    finish = NOW - age
    return RunFacts(
        state=state,
        finish_time=finish if state in retention_policy.FIELDS else None,
        queue_time=finish - timedelta(seconds=1),
        is_latest_of_job=keeps.get("latest", False),
        has_live_idempotency_key=keeps.get("key", False),
        is_replayed=keeps.get("replayed", False),
    )


@pytest.mark.parametrize(
    ("run", "purgeable"),
    [
        (_run(RunState.SUCCEEDED, 8 * DAY), True),
        (_run(RunState.SUCCEEDED, 6 * DAY), False),
        (_run(RunState.FAILED, 8 * DAY), False),
        (_run(RunState.FAILED, 31 * DAY), True),
        (_run(RunState.CANCELLED, 31 * DAY), True),
        (_run(RunState.CANCELLED, 29 * DAY), False),
        (_run(RunState.QUEUED, 90 * DAY), False),
        (_run(RunState.RUNNING, 90 * DAY), False),
        (_run(RunState.RETRY_WAIT, 90 * DAY), False),
        (_run(RunState.CANCELLING, 90 * DAY), False),
        (_run(RunState.SUCCEEDED, 90 * DAY, latest=True), False),
        (_run(RunState.SUCCEEDED, 90 * DAY, key=True), False),
        (_run(RunState.SUCCEEDED, 90 * DAY, replayed=True), False),
    ],
)
def test_which_runs_are_purgeable_by_default(run: RunFacts, purgeable: bool) -> None:
    assert retention_policy.run_is_purgeable(run, DEFAULTS, NOW) is purgeable


def test_a_job_override_replaces_the_defaults_field_by_field() -> None:
    policy = retention_policy.effective(DEFAULTS, {"succeeded": "0s", "failed": "3600s"})
    assert policy == Retention(succeeded=None, failed=timedelta(hours=1), cancelled=30 * DAY, logs=7 * DAY)
    assert not retention_policy.run_is_purgeable(_run(RunState.SUCCEEDED, 3650 * DAY), policy, NOW)
    assert retention_policy.run_is_purgeable(_run(RunState.FAILED, timedelta(hours=2)), policy, NOW)
    assert retention_policy.effective(DEFAULTS, None) == DEFAULTS


def test_settings_in_days_zero_keeps_forever() -> None:
    settings = RetentionSettings.from_settings(
        Settings(retention_succeeded_days=0, retention_logs_days=0.5, retention_skipped_slots_days=0)
    )
    assert settings.defaults.succeeded is None and settings.defaults.logs == timedelta(hours=12)
    assert settings.defaults.failed == 30 * DAY and settings.skipped_slots is None
    assert retention_policy.seconds_or_none(None) == 0.0
    assert retention_policy.seconds_or_none(DAY) == 86400.0


def test_log_lines_of_finished_runs_only() -> None:
    old = NOW - 8 * DAY
    assert retention_policy.line_is_purgeable(RunState.FAILED, old, DEFAULTS, NOW)
    assert not retention_policy.line_is_purgeable(RunState.RUNNING, old, DEFAULTS, NOW)
    assert not retention_policy.line_is_purgeable(RunState.FAILED, NOW - 6 * DAY, DEFAULTS, NOW)
    forever = retention_policy.effective(DEFAULTS, {"logs": "0s"})
    assert not retention_policy.line_is_purgeable(RunState.FAILED, old, forever, NOW)


def test_the_scan_bound_is_the_shortest_retention_of_any_job() -> None:
    hour = timedelta(hours=1)
    assert retention_policy.shortest(DEFAULTS, "succeeded", [None]) == 7 * DAY
    assert retention_policy.shortest(DEFAULTS, "succeeded", [hour]) == hour
    forever = Retention(None, None, None, None)
    assert retention_policy.shortest(forever, "failed", [None]) is None
    assert retention_policy.scan_before(NOW, None) is None
    assert retention_policy.scan_before(NOW, hour) == NOW - hour


def _field(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return caught.value.field


@pytest.mark.parametrize(
    ("retention", "field"),
    [
        (retention_pb2.Retention(succeeded=Duration(seconds=60)), "job.retention.succeeded"),
        (retention_pb2.Retention(failed=Duration(seconds=-3600)), "job.retention.failed"),
        (retention_pb2.Retention(cancelled=Duration(seconds=3650 * 86400 + 1)), "job.retention.cancelled"),
        (retention_pb2.Retention(logs=Duration(seconds=7200, nanos=5)), "job.retention.logs"),
    ],
)
def test_bad_retention_names_its_field(retention: retention_pb2.Retention, field: str) -> None:
    assert _field(lambda: validation.retention(retention)) == field


def test_retention_is_set_cleared_and_shown() -> None:
    good = retention_pb2.Retention(succeeded=Duration(seconds=0), failed=Duration(seconds=86400 * 90))
    assert validation.retention(good) is good
    job = job_pb2.Job(retention=good)
    assert _update_paths(job, []) == ["retention"]
    changes = _job_changes(job, [])
    assert changes.retention == Replacement({"succeeded": "0s", "failed": "7776000s"})
    assert _job_changes(job_pb2.Job(), ["retention"]).retention == Replacement(None)
    record = JobRecord("0190a4c2-0000-7000-8000-000000000001", "n", "", {"noop": {}}, {}, NOW, NOW)
    shown = job_to_proto(JobRecord(**{**record.__dict__, "retention": to_json(good)}))
    assert shown.retention == good
    assert not job_to_proto(record).HasField("retention")


class FakePurge(RunPurgeRepository):
    """Windows of a pretend history: each state has `windows` full windows then a short one."""

    def __init__(self, windows: int) -> None:
        self.windows = windows
        self.calls: list[tuple[str, object]] = []

    async def shortest_overrides(self) -> dict[str, timedelta | None]:
        return {"succeeded": None, "failed": None, "cancelled": None, "logs": None}

    async def purge_runs(
        self,
        state: RunState,
        field: str,
        default_seconds: float,
        scan_before: datetime,
        cursor: RunCursor,
        window: int,
    ) -> Window:
        self.calls.append((state.value, cursor))
        done = sum(1 for s, _ in self.calls if s == state.value)
        more = RunCursor(NOW, f"cursor-{done}") if done <= self.windows else None
        return Window(purged=window if more else 1, scanned=window, next_cursor=more)

    async def purge_logs(
        self, default_seconds: float, scan_before: datetime, after_id: int, window: int
    ) -> Window:
        self.calls.append(("logs", after_id))
        return Window(purged=0, scanned=0, next_cursor=None)

    async def purge_skipped_slots(self, seconds: float, limit: int) -> int:
        self.calls.append(("skipped", limit))
        return 0


async def test_a_sweep_walks_each_state_window_after_window_from_the_cursor() -> None:
    settings = RetentionSettings(DEFAULTS, 30 * DAY, batch_size=10, pause_seconds=0.0, interval_seconds=1.0)
    purge = FakePurge(windows=2)
    counts = await RetentionSweeper(purge, settings).sweep()
    succeeded = [cursor for state, cursor in purge.calls if state == "SUCCEEDED"]
    assert succeeded == [RunCursor(), RunCursor(NOW, "cursor-1"), RunCursor(NOW, "cursor-2")]
    assert [state for state, _ in purge.calls][-2:] == ["logs", "skipped"]
    assert counts.runs == 3 * (10 + 10 + 1)


async def test_a_state_kept_forever_is_not_walked() -> None:
    settings = RetentionSettings(
        Retention(None, 30 * DAY, 30 * DAY, None), None, batch_size=10, pause_seconds=0.0, interval_seconds=1.0
    )
    purge = FakePurge(windows=0)
    await RetentionSweeper(purge, settings).sweep()
    assert {state for state, _ in purge.calls} == {"FAILED", "CANCELLED"}


class FailingOnce(FakePurge):
    def __init__(self) -> None:
        super().__init__(windows=0)
        self.attempts = 0
        self.swept_again = asyncio.Event()

    async def shortest_overrides(self) -> dict[str, timedelta | None]:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("a statement this code did not expect to fail")
        self.swept_again.set()
        return await super().shortest_overrides()


async def test_the_sweep_loop_outlives_an_unexpected_failure() -> None:
    settings = RetentionSettings(DEFAULTS, None, batch_size=10, pause_seconds=0.0, interval_seconds=0.01)
    purge = FailingOnce()
    loop = asyncio.create_task(RetentionSweeper(purge, settings).run_forever())
    try:
        await asyncio.wait_for(purge.swept_again.wait(), timeout=30)
    finally:
        loop.cancel()
    assert purge.attempts >= 2
