"""The firing loop: fires due schedule slots. Every scheduler runs one; they coordinate only
through PostgreSQL (taskmesh.db.schedules), so any of them may die at any time.

A scheduler sleeps until the earliest due slot, a NOTIFY (a schedule changed, a job resumed,
LISTEN reconnected) or the poll interval (a safety net: 30 s by default, so that an idle
scheduler does not query every second), whichever comes first; then it claims due jobs in
batches, applies the pure decisions of taskmesh.schedule_policy to them and commits, until no
due job is left to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from scheduler.firing_metrics import FiringMetrics
from taskmesh import schedule_policy
from taskmesh.aio import wait_event
from taskmesh.cache.status import CacheWriter
from taskmesh.db.schedules import Decide, ScheduleRepository
from taskmesh.ids import new_id
from taskmesh.reconnect import Reconnect
from taskmesh.records import DueJob, FiredBatch, FireDecision, Json
from taskmesh.schedule_policy import FiringRules
from taskmesh.service_errors import DatabaseUnavailable
from taskmesh.states import SkipReason

log = logging.getLogger(__name__)

# When due jobs are left but none could be claimed (another scheduler holds them), look again
# this soon.
MIN_NAP = 0.01
# A backlog is fired in batches growing up to this many times the configured batch size.
BACKLOG_GROWTH = 8
# The next slot's batch is claimed and decided this long before its due time (its rows stay
# locked that long), so that only one statement is left to run at the slot.
PREPARE_AHEAD = 0.25
# A job whose stored schedule cannot be read is looked at again this much later.
QUARANTINE = timedelta(minutes=1)


@dataclass(frozen=True)
class FiringConfig:
    batch_size: int
    poll_interval: float
    rules: FiringRules


class ScheduleFiring:
    def __init__(
        self,
        store: ScheduleRepository,
        cache_writer: CacheWriter,
        metrics: FiringMetrics,
        wake: asyncio.Event,
        config: FiringConfig,
    ) -> None:
        self._store = store
        self._cache_writer = cache_writer
        self._metrics = metrics
        self._wake = wake
        self._config = config
        self._reconnect = Reconnect("firing schedules", logger=log)

    async def run_forever(self) -> None:
        while True:
            try:
                await self._fire_backlog()
                await self._sleep_until_due()
                self._reconnect.connected()
            except DatabaseUnavailable as error:
                await self._reconnect.failed(error)
            except Exception as error:  # the loop must outlive any one failure
                await self._reconnect.failed(error, unexpected=True)

    async def _fire_backlog(self) -> None:
        """Fire batches until no due job is left to this scheduler. A full batch means a
        backlog (thousands of jobs on the same slot): the next batch is twice as large, up to
        BACKLOG_GROWTH times the configured size, so that a burst costs fewer statements and
        commits while a few due jobs are still split between the schedulers."""
        limit = self._config.batch_size
        while await self.fire_batch(limit) >= limit:
            limit = min(2 * limit, BACKLOG_GROWTH * self._config.batch_size)

    async def fire_batch(self, limit: int | None = None) -> int:
        """Fire one batch of due jobs (at most `limit`, the configured batch size by default);
        returns how many jobs were claimed."""
        size = limit or self._config.batch_size
        return await self._fire(lambda decide: self._store.fire_due(size, decide))

    def _decide(self, job: DueJob) -> FireDecision:
        try:
            schedule = _parse(_canonical(job.schedule)).with_default_anchor(job.create_time)
            return schedule_policy.decide(schedule, job, self._config.rules, new_id)
        except Exception:
            log.exception("cannot fire job %s; looking again in %s", job.id, QUARANTINE, extra={"job_id": job.id})
            return FireDecision(job.id, (), (), (), job.next_fire_at, job.now + QUARANTINE, 0)

    async def fire_ahead(self, until: datetime) -> int:
        """Fire one batch of jobs due by `until` (ahead), prepared now and applied at `until`;
        returns how many jobs were claimed."""
        return await self._fire(lambda decide: self._store.fire_ahead(self._config.batch_size, until, decide))

    async def _fire(self, claim: Callable[[Decide], Awaitable[tuple[int, FiredBatch]]]) -> int:
        """Claim a batch with `claim`, deciding its jobs; then the cache, metrics and log."""
        decisions: list[FireDecision] = []

        def decide(jobs: Sequence[DueJob]) -> list[FireDecision]:
            decisions.extend(self._decide(job) for job in jobs)
            return decisions

        claimed, fired = await claim(decide)
        if claimed:
            self._cache_writer.enqueue([*fired.created, *fired.cancelled])
            self._metrics.record(decisions, fired)
            _log_unusual(decisions, fired.conflicts)
        return claimed

    async def _sleep_until_due(self) -> None:
        """Sleep until the earliest due slot; a slot coming within the poll interval is
        prepared PREPARE_AHEAD before it and fired right at it."""
        next_due = await self._store.next_due()
        if next_due is not None and 0 < next_due[1] <= self._config.poll_interval:
            due_at, until_due = next_due
            if await wait_event(self._wake, max(0.0, until_due - PREPARE_AHEAD)):
                self._wake.clear()
                return
            if await self.fire_ahead(due_at):
                return
            # Another scheduler prepared them: fire whatever it leaves at the slot.
            next_due = await self._store.next_due()
        until = None if next_due is None else next_due[1]
        await wait_event(self._wake, sleep_seconds(until, self._config.poll_interval))
        self._wake.clear()


def sleep_seconds(until_due: float | None, poll_interval: float) -> float:
    """How long to sleep: until the earliest due slot, exactly (rounding a slot 2 ms away up to
    MIN_NAP would fire it 8 ms late), or MIN_NAP when jobs are overdue (another scheduler holds
    them), or the poll interval when nothing is scheduled (NOTIFY wakes the loop when a job
    becomes due earlier, and when LISTEN reconnects)."""
    if until_due is None:
        return poll_interval
    return min(poll_interval, until_due if until_due > 0 else MIN_NAP)


def _canonical(data: Json) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=4096)
def _parse(data: str) -> schedule_policy.Schedule:
    """Stored schedules, parsed once (parsing validates the cron expression)."""
    return schedule_policy.from_json(json.loads(data))


def _log_unusual(decisions: Sequence[FireDecision], conflicts: int) -> None:
    for decision in decisions:
        if decision.misfired or decision.skipped:
            reasons = sorted({s.reason.value for s in decision.skipped})
            overlap_only = not decision.misfired and reasons == [SkipReason.OVERLAP.value]
            log.log(
                logging.DEBUG if overlap_only else logging.INFO,
                "job %s: fired %d slot(s) (%d missed), skipped %d (%s)",
                decision.job_id,
                len(decision.fired),
                decision.misfired,
                len(decision.skipped),
                ", ".join(reasons) or "-",
                extra={"job_id": decision.job_id},
            )
    if conflicts:
        log.error("%d slot(s) already had a run: not fired again", conflicts)
