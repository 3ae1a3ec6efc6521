"""What JobService does, without gRPC's server types: validated values in, records out (the
status view carries the run as the protobuf message the status cache holds)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from api_server.run_telemetry import CacheStats
from taskmesh import redaction, schedule_policy
from taskmesh.audit import AuditContext
from taskmesh.cache.status import CacheWriter, StatusCache
from taskmesh.convert import from_json, run_to_proto, to_json
from taskmesh.db.jobs import JobRepository
from taskmesh.db.runs import RunRepository
from taskmesh.db.schedules import ScheduleRepository
from taskmesh.ids import new_id
from taskmesh.records import (
    Condition,
    FlowSettings,
    JobChanges,
    JobRecord,
    Json,
    Page,
    ScheduleSetting,
    SkippedSlotRecord,
)
from taskmesh.service_errors import CacheUnavailable
from taskmesh.v1 import job_pb2, run_pb2


@dataclass(frozen=True)
class JobStatusView:
    job_id: str
    job_name: str
    last_run: run_pb2.Run | None
    job: JobRecord | None = None  # for the schedule's health


@dataclass(frozen=True)
class NewSchedule:
    """A validated schedule from a request and its protobuf JSON; both None remove it."""

    schedule: schedule_policy.Schedule | None
    data: Json | None


@dataclass(frozen=True)
class JobPolicies:
    """The optional job-level fields of CreateJob, validated."""

    schedule: NewSchedule | None = None
    retry_policy: Json | None = None
    attempt_timeout_seconds: float | None = None
    flow: FlowSettings | None = None
    parameters: Json | None = None
    parameter_schema: Json | None = None
    retention: Json | None = None
    pool: str = "default"
    start_deadline_seconds: float | None = None


JOB_ROW_SECONDS = 1.0
MAX_JOB_ROWS = 10_000


class Jobs:
    def __init__(
        self,
        jobs: JobRepository,
        runs: RunRepository,
        cache: StatusCache,
        cache_writer: CacheWriter,
        schedule_store: ScheduleRepository,
        cache_stats: CacheStats,
    ) -> None:
        self._cache_stats = cache_stats
        self._jobs = jobs
        self._runs = runs
        self._cache = cache
        self._cache_writer = cache_writer
        self._schedules = schedule_store
        # Job rows read for GetJobStatus, briefly: the status is served from Redis, and a
        # schedule's health (or a deletion) may show up to JOB_ROW_SECONDS late.
        self._job_rows: dict[str, tuple[float, JobRecord]] = {}

    async def create(
        self,
        name: str,
        description: str,
        executor: Json,
        labels: dict[str, str],
        policies: JobPolicies | None = None,
        *,
        audit: AuditContext,
    ) -> JobRecord:
        policies = policies or JobPolicies()
        job_id, now = new_id(), datetime.now(UTC)
        setting = None
        if policies.schedule is not None:
            setting = _schedule_setting(policies.schedule, job_id, created=now, now=now)
        return await self._jobs.create(
            job_id,
            name,
            description,
            executor,
            labels,
            audit=audit,
            now=now,
            schedule=setting,
            retry_policy=policies.retry_policy,
            attempt_timeout_seconds=policies.attempt_timeout_seconds,
            flow=policies.flow,
            parameters=policies.parameters,
            parameter_schema=policies.parameter_schema,
            retention=policies.retention,
            pool=policies.pool,
            start_deadline_seconds=policies.start_deadline_seconds,
        )

    async def get(self, job_id: str) -> JobRecord:
        return await self._jobs.get(job_id)

    async def list_jobs(self, conditions: Sequence[Condition], page: Page | None, limit: int) -> list[JobRecord]:
        return await self._jobs.list_page(conditions, page, limit)

    async def update(
        self, job_id: str, changes: JobChanges, audit: AuditContext, schedule: NewSchedule | None = None
    ) -> JobRecord:
        """A changed schedule starts afresh from now: slots it would have had before are not
        caught up (the misfire policy is about slots of the schedule as it was)."""
        self._job_rows.pop(job_id, None)
        if changes.executor is not None:
            changes = replace(changes, executor=await self._with_kept_secrets(job_id, changes.executor))
        if schedule is not None:
            now = datetime.now(UTC)
            created = now
            if schedule.schedule is not None and _needs_creation_time(schedule.schedule):
                created = (await self._jobs.get(job_id)).create_time
            changes = replace(changes, schedule=_schedule_setting(schedule, job_id, created=created, now=now))
        return await self._jobs.update(job_id, changes, audit)

    async def _with_kept_secrets(self, job_id: str, executor: Json) -> Json:
        """A new executor whose redaction placeholders take the stored values back."""
        new = from_json(executor, job_pb2.Executor)
        if not redaction.has_placeholders(new):
            return executor
        stored = from_json((await self._jobs.get(job_id)).executor, job_pb2.Executor)
        return to_json(redaction.restore(new, stored))

    async def pause(self, job_id: str, audit: AuditContext) -> JobRecord:
        self._job_rows.pop(job_id, None)
        return await self._jobs.pause(job_id, audit)

    async def resume(self, job_id: str, audit: AuditContext) -> JobRecord:
        self._job_rows.pop(job_id, None)
        return await self._jobs.resume(job_id, audit)

    async def list_skipped(self, job_id: str, page: Page | None, limit: int) -> list[SkippedSlotRecord]:
        await self._jobs.get(job_id)  # NOT_FOUND rather than an empty list
        return await self._schedules.list_skipped(job_id, page, limit)

    async def delete(self, job_id: str, audit: AuditContext) -> None:
        self._job_rows.pop(job_id, None)
        await self._jobs.delete(job_id, audit)
        await self._cache.forget(job_id)

    async def status(self, job_id: str) -> JobStatusView:
        """The latest run from the cache (PostgreSQL on a miss); the job's name and schedule
        health from PostgreSQL, read at the same time and reused for a second."""
        cached, job = await asyncio.gather(self._cached_run(job_id), self._recent_job(job_id))
        if cached is not None:
            return JobStatusView(job_id=job_id, job_name=job.name, last_run=cached, job=job)
        latest = await self._runs.latest_for_job(job_id)
        if latest is None:
            return JobStatusView(job_id=job_id, job_name=job.name, last_run=None, job=job)
        self._cache_writer.enqueue([latest])  # read-through: the next read is a hit
        return JobStatusView(job_id=job_id, job_name=job.name, last_run=run_to_proto(latest), job=job)

    async def _recent_job(self, job_id: str) -> JobRecord:
        now = time.monotonic()
        known = self._job_rows.get(job_id)
        if known is not None and known[0] > now:
            return known[1]
        job = await self._jobs.get(job_id)
        if len(self._job_rows) >= MAX_JOB_ROWS:
            self._job_rows.clear()
        self._job_rows[job_id] = (now + JOB_ROW_SECONDS, job)
        return job

    async def _cached_run(self, job_id: str) -> run_pb2.Run | None:
        try:
            cached = await self._cache.get(job_id)
        except CacheUnavailable:
            self._cache_stats.record("error")
            return None
        self._cache_stats.record("hit" if cached is not None else "miss")
        return cached


def _needs_creation_time(schedule: schedule_policy.Schedule) -> bool:
    return isinstance(schedule.kind, schedule_policy.Interval) and schedule.kind.anchor is None


def _schedule_setting(new: NewSchedule, job_id: str, created: datetime, now: datetime) -> ScheduleSetting:
    if new.schedule is None:
        return ScheduleSetting(None, None, None)
    first = schedule_policy.first_slot(new.schedule.with_default_anchor(created), job_id, now)
    if first is None:
        return ScheduleSetting(new.data, None, None)
    return ScheduleSetting(new.data, first.slot, first.due)
