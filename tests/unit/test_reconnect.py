"""taskmesh.reconnect: backoff, jitter, cap, and one log line per outage and per recovery."""

from __future__ import annotations

import asyncio
import logging

import pytest

from taskmesh.reconnect import Backoff, Reconnect

LOGGER = "tests.reconnect"


class FakeTime:
    """A clock that only the fake sleep moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _link(time: FakeTime, backoff: Backoff | None = None, spread: float = 0.5) -> Reconnect:
    return Reconnect(
        "test link",
        backoff or Backoff(),
        sleep=time.sleep,
        clock=time.clock,
        spread=lambda: spread,
        logger=logging.getLogger(LOGGER),
    )


async def _fail(link: Reconnect, times: int) -> None:
    for _ in range(times):
        await link.failed(ConnectionError("refused"))


def test_delays_start_low_double_and_stop_at_the_cap() -> None:
    time = FakeTime()
    asyncio.run(_fail(_link(time, Backoff(initial=0.2, multiplier=2, cap=1.0)), 6))
    assert time.slept == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_jitter_spreads_each_delay_within_its_bounds() -> None:
    backoff = Backoff(initial=1.0, cap=10.0, jitter=0.2)
    assert backoff.delay(1, 0.0) == pytest.approx(0.8)
    assert backoff.delay(1, 0.999999) == pytest.approx(1.2)
    assert backoff.delay(3, 0.5) == pytest.approx(4.0)
    assert backoff.delay(9, 0.999999) == pytest.approx(12.0)  # the cap, jittered as well


def test_a_link_that_worked_again_starts_over_from_the_initial_delay() -> None:
    time = FakeTime()
    link = _link(time)

    async def outages() -> None:
        await _fail(link, 3)
        link.connected()
        await _fail(link, 1)

    asyncio.run(outages())
    assert time.slept == pytest.approx([0.2, 0.4, 0.8, 0.2])
    assert link.failures == 1


def test_one_warning_per_outage_and_one_line_on_recovery(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    link = _link(time)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def outage() -> None:
        link.connected()  # up from the start: nothing to say
        await _fail(link, 4)
        link.connected()
        link.connected()

    asyncio.run(outage())
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [level for level, _ in lines] == [logging.WARNING] + [logging.DEBUG] * 3 + [logging.INFO]
    assert lines[0][1] == "test link interrupted (refused); retrying in 0.2s"
    assert lines[-1][1] == "test link recovered after 4 failed attempt(s) in 3.0s"


def test_an_unexpected_error_is_logged_with_its_traceback_every_time(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    link = _link(time)

    async def bugs() -> None:
        for _ in range(2):
            try:
                raise KeyError("bug")
            except KeyError as error:
                await link.failed(error, unexpected=True)

    asyncio.run(bugs())
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info and r.exc_info[0] is KeyError for r in errors)
    assert time.slept == pytest.approx([0.2, 0.4])


def test_a_reason_given_by_the_caller_replaces_the_error_text(caplog: pytest.LogCaptureFixture) -> None:
    link = _link(FakeTime())
    asyncio.run(link.failed(OSError(), "UNAVAILABLE: scheduler stopped"))
    assert "(UNAVAILABLE: scheduler stopped)" in caplog.records[-1].getMessage()
