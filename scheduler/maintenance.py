"""The scheduler's periodic duties: queue due retries, reap attempts whose worker vanished or
that overran their timeout, purge history past its retention. Every scheduler runs them; row
locks (SKIP LOCKED) keep them apart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from scheduler.outcomes import AttemptEnding, resolve_expired
from taskmesh import retention_policy
from taskmesh.aio import wait_event
from taskmesh.cache.status import CacheWriter
from taskmesh.db.run_purge import FIRST_LOG_CURSOR, RunCursor, RunPurgeRepository
from taskmesh.db.runs import RunRepository
from taskmesh.reconnect import Reconnect
from taskmesh.records import AttemptRef, ClaimedAttempt, ClaimRequest, RunRecord
from taskmesh.service_errors import Unavailable
from taskmesh.settings import Settings
from taskmesh.states import RunState

log = logging.getLogger(__name__)

# Retries are promoted when due (the loop sleeps until the earliest, or until this scheduler
# records a new one), and looked for at least every REAP_EVERY_SECONDS (other schedulers' ones).
MIN_RETRY_WAIT_SECONDS = 0.01
REAP_EVERY_SECONDS = 1.0
# A statement that took this long means the database was out of reach (the pool waited).
STALL_SECONDS = 1.0


class ReapObserver(Protocol):
    """Sees the attempts the reaper closed (scheduler.run_telemetry.RunObserver)."""

    def reaped(self, runs: Sequence[RunRecord]) -> None: ...


class RetryWake:
    """Sees the ledger's committed outcomes (a scheduler.attempts.LedgerObserver): one that put
    a run in RETRY_WAIT wakes the maintenance loop, whose retry may now be due first."""

    def __init__(self, maintenance: Maintenance) -> None:
        self._maintenance = maintenance

    def claimed(self, requests: Sequence[ClaimRequest], claimed: Sequence[ClaimedAttempt | None]) -> None:
        return None

    def ended(self, endings: Sequence[AttemptEnding], recorded: Sequence[RunRecord | None]) -> None:
        if any(run is not None and run.state == RunState.RETRY_WAIT for run in recorded):
            self._maintenance.retry_recorded()

    def heartbeat(self, worker_id: str, refs: Sequence[AttemptRef]) -> None:
        return None


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
        self._retry_recorded = asyncio.Event()

    def retry_recorded(self) -> None:
        """A run went to RETRY_WAIT (its retry may be due before the next look)."""
        self._retry_recorded.set()

    async def run_forever(self) -> None:
        next_reap = 0.0
        while True:
            started = time.monotonic()
            try:
                self._retry_recorded.clear()  # the look below sees the retries recorded so far
                due = await self._runs.maintenance_due(self._grace)
                if time.monotonic() - started > STALL_SECONDS:  # the database was out of reach
                    next_reap = max(next_reap, time.monotonic() + self._lease_seconds)
                retry_wait = due.seconds_to_retry
                if retry_wait is not None and retry_wait <= 0:
                    await self.promote_due_retries()
                    retry_wait = 0.0  # look again at once: the next retry may be due too
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + REAP_EVERY_SECONDS
                    if due.expired:
                        await self.reap()
                    if due.late:
                        await self.fail_late_starts()
                pause = min(
                    REAP_EVERY_SECONDS if retry_wait is None else retry_wait,
                    max(0.0, next_reap - time.monotonic()),
                )
                self._reconnect.connected()
            except Unavailable as error:
                next_reap = time.monotonic() + self._lease_seconds
                await self._reconnect.failed(error)
                continue
            await wait_event(self._retry_recorded, max(MIN_RETRY_WAIT_SECONDS, pause))

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


@dataclass(frozen=True)
class RetentionSettings:
    defaults: retention_policy.Retention
    skipped_slots: timedelta | None  # None: kept forever
    batch_size: int
    pause_seconds: float
    interval_seconds: float
    # Audit events (taskmesh.db.audit), counted from their time; None: kept forever.
    audit_events: timedelta | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionSettings:
        days = retention_policy.days
        return cls(
            defaults=retention_policy.Retention(
                succeeded=days(settings.retention_succeeded_days),
                failed=days(settings.retention_failed_days),
                cancelled=days(settings.retention_cancelled_days),
                logs=days(settings.retention_logs_days),
            ),
            skipped_slots=days(settings.retention_skipped_slots_days),
            batch_size=settings.retention_batch_size,
            pause_seconds=settings.retention_pause_seconds,
            interval_seconds=settings.retention_interval_seconds,
            audit_events=days(settings.audit_retention_days),
        )


@dataclass
class SweepCounts:
    runs: int = 0
    log_lines: int = 0
    skipped_slots: int = 0
    audit_events: int = 0
    statements: int = 0


# taskmesh.db.audit.purge_audit_events bound to an engine: (before, limit) -> rows deleted.
AuditPurge = Callable[[datetime, int], Awaitable[int]]


class RetentionSweeper:
    """Purges finished history past its retention (taskmesh.retention_policy), one short
    statement per window of rows, pausing between statements that deleted something so that the
    hot path keeps the database. Every scheduler sweeps, with no leader: windows lock what they
    delete with SKIP LOCKED, so two sweepers never wait for each other nor delete a row twice.
    A sweep walks each terminal state's runs oldest first up to the shortest retention any job
    has, then the log lines, then the skipped slots, then the audit events (when `audit` is
    given and their retention is not 0); the next sweep starts over after interval_seconds."""

    def __init__(
        self, purge: RunPurgeRepository, settings: RetentionSettings, audit: AuditPurge | None = None
    ) -> None:
        self._purge = purge
        self._settings = settings
        self._audit = audit
        self._reconnect = Reconnect("retention", logger=log)

    async def run_forever(self) -> None:
        while True:
            try:
                started = time.monotonic()
                counts = await self.sweep()
                if counts.runs or counts.log_lines or counts.skipped_slots or counts.audit_events:
                    log.info(
                        "retention purged %d runs, %d log lines, %d skipped slots, %d audit events in %.1fs",
                        counts.runs,
                        counts.log_lines,
                        counts.skipped_slots,
                        counts.audit_events,
                        time.monotonic() - started,
                    )
                self._reconnect.connected()
            except Unavailable as error:
                await self._reconnect.failed(error)
                continue
            except Exception as error:  # the loop must outlive any one failure
                await self._reconnect.failed(error, unexpected=True)
            await asyncio.sleep(self._settings.interval_seconds)

    async def sweep(self) -> SweepCounts:
        counts = SweepCounts()
        overrides = await self._purge.shortest_overrides()
        now = datetime.now(UTC)
        defaults = self._settings.defaults
        for state, field in retention_policy.FIELDS.items():
            bound = retention_policy.scan_before(
                now, retention_policy.shortest(defaults, field, [overrides[field]])
            )
            cursor: RunCursor | None = RunCursor() if bound is not None else None
            while cursor is not None and bound is not None:
                window = await self._purge.purge_runs(
                    state,
                    field,
                    retention_policy.seconds_or_none(defaults.for_field(field)),
                    bound,
                    cursor,
                    self._settings.batch_size,
                )
                counts.runs += window.purged
                cursor = window.next_cursor
                await self._pause(counts, window.purged)
        await self._sweep_logs(counts, overrides, now)
        if self._settings.skipped_slots is not None:
            seconds = self._settings.skipped_slots.total_seconds()
            while True:
                purged = await self._purge.purge_skipped_slots(seconds, self._settings.batch_size)
                counts.skipped_slots += purged
                await self._pause(counts, purged)
                if purged < self._settings.batch_size:
                    break
        await self._sweep_audit(counts, now)
        return counts

    async def _sweep_audit(self, counts: SweepCounts, now: datetime) -> None:
        """Audit events older than their retention, oldest first, a batch per statement."""
        if self._audit is None or self._settings.audit_events is None:
            return
        before = now - self._settings.audit_events
        while True:
            purged = await self._audit(before, self._settings.batch_size)
            counts.audit_events += purged
            await self._pause(counts, purged)
            if purged < self._settings.batch_size:
                break

    async def _sweep_logs(
        self, counts: SweepCounts, overrides: dict[str, timedelta | None], now: datetime
    ) -> None:
        defaults = self._settings.defaults
        field = retention_policy.LOGS
        bound = retention_policy.scan_before(now, retention_policy.shortest(defaults, field, [overrides[field]]))
        after: int | None = FIRST_LOG_CURSOR if bound is not None else None
        while after is not None and bound is not None:
            window = await self._purge.purge_logs(
                retention_policy.seconds_or_none(defaults.logs), bound, after, self._settings.batch_size
            )
            counts.log_lines += window.purged
            after = window.next_cursor
            await self._pause(counts, window.purged)

    async def _pause(self, counts: SweepCounts, purged: int) -> None:
        counts.statements += 1
        await asyncio.sleep(self._settings.pause_seconds if purged else 0)
