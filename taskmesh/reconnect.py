"""How every long-lived link (to RabbitMQ, PostgreSQL, the scheduler) waits after a failure and
says so: exponential backoff with jitter and a cap, one warning when the link goes down, one
line when it is back.

A loop that keeps a link up calls connected() once the link works again and `await failed(e)`
after it broke; failed() logs and sleeps the next delay. Which errors count as an outage stays
with the loop (it knows its driver); when to retry and what to log is decided here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.2  # low: a restarted peer is usually back within a second
    multiplier: float = 2.0
    cap: float = 2.0  # a link is tried at least this often: a peer back is found within it
    jitter: float = 0.2  # each delay is spread over +-20%, so that peers do not knock in step

    def delay(self, failures: int, spread: float) -> float:
        """The wait after the n-th consecutive failure (n >= 1); spread is uniform in [0, 1)."""
        base = min(self.initial * self.multiplier ** (failures - 1), self.cap)
        return base * (1 - self.jitter + 2 * self.jitter * spread)


# The one policy of every link: decided here, not per loop.
BACKOFF = Backoff()


class Reconnect:
    """The backoff state of one link, named for the log (e.g. "outbox relay")."""

    def __init__(
        self,
        link: str,
        backoff: Backoff = BACKOFF,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[], float] = random.random,
        logger: logging.Logger = log,
    ) -> None:
        self.link = link
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._spread = spread
        self._log = logger
        self.failures = 0  # consecutive, since the link last worked
        self._down_since = 0.0

    def connected(self) -> None:
        """The link works: log the recovery if it was down; the next outage starts over."""
        if self.failures:
            self._log.info(
                "%s recovered after %d failed attempt(s) in %.1fs",
                self.link,
                self.failures,
                self._clock() - self._down_since,
            )
        self.failures = 0

    async def failed(self, error: BaseException, reason: str | None = None, *, unexpected: bool = False) -> None:
        """Log the failure (a warning at the start of an outage, debug while it lasts; with the
        traceback, every time, when unexpected) and sleep until the next attempt."""
        if self.failures == 0:
            self._down_since = self._clock()
        self.failures += 1
        delay = self._backoff.delay(self.failures, self._spread())
        reason = reason or str(error) or error.__class__.__name__
        if unexpected:
            self._log.error("%s failed (%s); retrying in %.1fs", self.link, reason, delay, exc_info=error)
        else:
            level = logging.WARNING if self.failures == 1 else logging.DEBUG
            self._log.log(level, "%s interrupted (%s); retrying in %.1fs", self.link, reason, delay)
        await self._sleep(delay)
