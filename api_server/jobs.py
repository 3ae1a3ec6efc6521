"""What JobService does, free of gRPC: validated values in, records out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from taskmesh.cache.status import CacheWriter, StatusCache
from taskmesh.convert import run_to_proto
from taskmesh.db.jobs import JobRepository
from taskmesh.db.runs import RunRepository
from taskmesh.errors import CacheUnavailable
from taskmesh.ids import new_id
from taskmesh.records import Condition, JobChanges, JobRecord, Json, Page
from taskmesh.v1 import run_pb2


@dataclass(frozen=True)
class JobStatusView:
    job_id: str
    job_name: str
    last_run: run_pb2.Run | None


class Jobs:
    def __init__(
        self, jobs: JobRepository, runs: RunRepository, cache: StatusCache, cache_writer: CacheWriter
    ) -> None:
        self._jobs = jobs
        self._runs = runs
        self._cache = cache
        self._cache_writer = cache_writer

    async def create(self, name: str, description: str, executor: Json, labels: dict[str, str]) -> JobRecord:
        return await self._jobs.create(new_id(), name, description, executor, labels)

    async def get(self, job_id: str) -> JobRecord:
        return await self._jobs.get(job_id)

    async def list_jobs(self, conditions: Sequence[Condition], page: Page | None, limit: int) -> list[JobRecord]:
        return await self._jobs.list_page(conditions, page, limit)

    async def update(self, job_id: str, changes: JobChanges) -> JobRecord:
        return await self._jobs.update(job_id, changes)

    async def delete(self, job_id: str) -> None:
        await self._jobs.delete(job_id)
        await self._cache.forget(job_id)

    async def status(self, job_id: str) -> JobStatusView:
        try:
            cached = await self._cache.get(job_id)
        except CacheUnavailable:
            cached = None
        if cached is not None:
            return JobStatusView(job_id=job_id, job_name=cached.job_name, last_run=cached)
        job, latest = await asyncio.gather(self._jobs.get(job_id), self._runs.latest_for_job(job_id))
        if latest is None:
            return JobStatusView(job_id=job_id, job_name=job.name, last_run=None)
        self._cache_writer.enqueue([latest])  # read-through: the next read is a hit
        return JobStatusView(job_id=job_id, job_name=job.name, last_run=run_to_proto(latest))
