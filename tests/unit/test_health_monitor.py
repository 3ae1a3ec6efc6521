"""The health monitor: gating checks decide serving, others only inform; changes are reported
once; a hung or failing check counts as down with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

from taskmesh.health import CheckResult, HealthMonitor, is_serving
from taskmesh.service_errors import DatabaseUnavailable


class Switch:
    """A check whose outcome the test sets."""

    def __init__(self, details: dict[str, Any] | None = None) -> None:
        self.error: Exception | None = None
        self.hang = False
        self.details = details
        self.calls = 0

    async def __call__(self) -> dict[str, Any] | None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.error is not None:
            raise self.error
        return self.details


class Recorder:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def __call__(self, serving: bool) -> None:
        self.calls.append(serving)


def _monitor(database: Switch, cache: Switch, told: Recorder, interval: float = 1.0) -> HealthMonitor:
    return HealthMonitor({"database": database, "cache": cache}, {"database"}, told, interval=interval)


async def test_serving_follows_the_gating_checks_and_is_reported_on_change_only() -> None:
    database, cache, told = Switch(), Switch({"keys": 3}), Recorder()
    monitor = _monitor(database, cache, told)

    first = await monitor.check_once()
    await monitor.check_once()
    assert first.serving and told.calls == [True]
    assert first.results["cache"] == CheckResult(True, {"keys": 3})

    database.error = DatabaseUnavailable("connection refused")
    down = await monitor.check_once()
    await monitor.check_once()
    assert told.calls == [True, False]
    assert not down.serving and not down.up("database")
    assert "connection refused" in down.results["database"].details["error"]

    database.error = None
    assert (await monitor.check_once()).serving
    assert told.calls == [True, False, True]


async def test_a_failing_informative_check_does_not_stop_serving() -> None:
    database, cache, told = Switch(), Switch(), Recorder()
    cache.error = ConnectionError("redis gone")
    snapshot = await _monitor(database, cache, told).check_once()
    assert snapshot.serving and told.calls == [True]
    assert not snapshot.up("cache")
    assert snapshot.results["cache"].details == {"error": "ConnectionError: redis gone"}


async def test_a_check_that_hangs_is_down_after_the_timeout() -> None:
    database, cache, told = Switch(), Switch(), Recorder()
    database.hang = True
    snapshot = await _monitor(database, cache, told, interval=0.01).check_once()  # timeout: at least 1s
    assert not snapshot.serving and told.calls == [False]
    assert "no answer within" in snapshot.results["database"].details["error"]


async def test_a_serving_process_keeps_serving_through_one_slow_round_but_not_two() -> None:
    database, cache, told = Switch(), Switch(), Recorder()
    monitor = _monitor(database, cache, told, interval=0.01)
    assert (await monitor.check_once()).serving
    database.hang = True  # e.g. the process's own event loop was busy: not a lost database
    slow = await monitor.check_once()
    assert slow.serving and not slow.up("database") and told.calls == [True]
    assert not (await monitor.check_once()).serving and told.calls == [True, False]
    database.hang = False
    assert (await monitor.check_once()).serving
    database.hang = True  # the count starts again after a good round
    assert (await monitor.check_once()).serving


async def test_an_error_stops_serving_at_once_even_after_a_slow_round() -> None:
    database, cache, told = Switch(), Switch(), Recorder()
    monitor = _monitor(database, cache, told, interval=0.01)
    await monitor.check_once()
    database.hang = True
    await monitor.check_once()
    database.hang, database.error = False, DatabaseUnavailable("refused")
    assert not (await monitor.check_once()).serving and told.calls == [True, False]


async def _until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_loop_keeps_checking_and_checks_faster_while_not_serving() -> None:
    database, cache, told = Switch(), Switch(), Recorder()
    database.error = DatabaseUnavailable()
    monitor = _monitor(database, cache, told, interval=0.2)
    task = asyncio.create_task(monitor.run_forever())
    try:
        await _until(lambda: database.calls >= 2)
        assert monitor.delay_after(monitor.snapshot) == 0.05
        database.error = None
        await _until(lambda: told.calls == [False, True])
        assert monitor.delay_after(monitor.snapshot) == 0.2
    finally:
        task.cancel()


def test_serving_needs_every_gating_check_present_and_up() -> None:
    up, down = CheckResult(True), CheckResult(False)
    assert is_serving({"database": up, "broker": up}, {"database", "broker"})
    assert not is_serving({"database": up, "broker": down}, {"database", "broker"})
    assert not is_serving({"database": up}, {"database", "broker"})
    assert is_serving({"database": up, "cache": down}, {"database"})
