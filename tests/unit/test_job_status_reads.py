"""GetJobStatus serves the run from the cache and reads the job row at most once a second."""

from datetime import UTC, datetime
from typing import Any

from api_server.jobs import Jobs
from api_server.run_telemetry import CacheStats
from taskmesh.audit import AuditContext
from taskmesh.records import JobRecord
from taskmesh.v1 import run_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class CountingJobs:
    def __init__(self) -> None:
        self.reads = 0

    async def get(self, job_id: str) -> JobRecord:
        self.reads += 1
        return JobRecord(job_id, f"job-{self.reads}", "", {"noop": {}}, {}, NOW, NOW)

    async def pause(self, job_id: str, audit: AuditContext) -> JobRecord:
        return await self.get(job_id)


class CachedRuns:
    async def get(self, job_id: str) -> run_pb2.Run:
        return run_pb2.Run(id="r", job_id=job_id, state=run_pb2.Run.SUCCEEDED)


def _jobs(rows: CountingJobs) -> Jobs:
    nothing: Any = None
    return Jobs(rows, nothing, CachedRuns(), nothing, nothing, CacheStats())  # type: ignore[arg-type]


async def test_a_cache_hit_reads_the_job_row_once_a_second() -> None:
    rows = CountingJobs()
    jobs = _jobs(rows)
    first = await jobs.status("j1")
    second = await jobs.status("j1")
    assert first.last_run is not None and first.last_run.state == run_pb2.Run.SUCCEEDED
    assert rows.reads == 1 and second.job_name == first.job_name


async def test_this_process_sees_its_own_changes_at_once() -> None:
    rows = CountingJobs()
    jobs = _jobs(rows)
    await jobs.status("j1")
    await jobs.pause("j1", AuditContext.system("tests"))
    after = await jobs.status("j1")
    assert rows.reads == 3 and after.job_name == "job-3"
