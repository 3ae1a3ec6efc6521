"""The scheduler's periodic duties: queue due retries, reap attempts whose worker vanished or
that overran their timeout. Every scheduler runs them; row locks (SKIP LOCKED) keep them apart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from scheduler.outcomes import resolve_expired
from taskmesh.cache.status import CacheWriter
from taskmesh.db.runs import RunRepository
from taskmesh.reconnect import Reconnect
from taskmesh.records import RunRecord
from taskmesh.service_errors import Unavailable

log = logging.getLogger(__name__)

RETRY_TICK_SECONDS = 0.2
REAP_EVERY_SECONDS = 1.0
# A statement that took this long means the database was out of reach (the pool waited).
STALL_SECONDS = 1.0


class ReapObserver(Protocol):
    """Sees the attempts the reaper closed (scheduler.run_telemetry.RunObserver)."""

    def reaped(self, runs: Sequence[RunRecord]) -> None: ...


class Maintenance:
    def __init__(
        self,
        runs: RunRepository,
        cache_writer: CacheWriter,
        timeout_grace_seconds: float,
        observers: Sequence[ReapObserver] = (),
        lease_seconds: float = 0.0,
    ) -> None:
        self._runs = runs
        self._cache_writer = cache_writer
        self._grace = timeout_grace_seconds
        # After the database was out of reach, leases ran out because no heartbeat could land,
        # not because workers died: reaping waits this long, for their reports to arrive.
        self._lease_seconds = lease_seconds
        self._observers = tuple(observers)
        self._reconnect = Reconnect("maintenance", logger=log)

    async def run_forever(self) -> None:
        next_reap = 0.0
        while True:
            started = time.monotonic()
            try:
                await self.promote_due_retries()
                if time.monotonic() - started > STALL_SECONDS:  # the database was out of reach
                    next_reap = max(next_reap, time.monotonic() + self._lease_seconds)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + REAP_EVERY_SECONDS
                    await self.reap()
                    await self.fail_late_starts()
                self._reconnect.connected()
            except Unavailable as error:
                next_reap = time.monotonic() + self._lease_seconds
                await self._reconnect.failed(error)
            await asyncio.sleep(RETRY_TICK_SECONDS)

    async def promote_due_retries(self) -> None:
        while promoted := await self._runs.promote_retries():
            self._cache_writer.enqueue(promoted)
            log.info("queued %d retries", len(promoted))

    async def fail_late_starts(self) -> None:
        """Runs nobody started within their job's start_deadline end FAILED (NOT_STARTED)."""
        while failed := await self._runs.fail_not_started():
            self._cache_writer.enqueue(failed)
            log.warning("%d runs not started within their start deadline: failed", len(failed))

    async def reap(self) -> None:
        while reaped := await self._runs.expire_attempts(resolve_expired, self._grace):
            self._cache_writer.enqueue(reaped)
            for observer in self._observers:
                observer.reaped(reaped)
            for run in reaped:
                log.warning(
                    "attempt %d of run %s expired: %s -> %s",
                    run.attempts[-1]["attempt"] if run.attempts else run.attempt,
                    run.id,
                    (run.error or {}).get("message", ""),
                    run.state.value,
                    extra={
                        "run_id": run.id,
                        "job_id": run.job_id,
                        "attempt": run.attempts[-1]["attempt"] if run.attempts else run.attempt,
                    },
                )
