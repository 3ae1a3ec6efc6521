"""The job status cache against the real Redis, and its fallbacks when Redis is away."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from taskmesh.cache.status import StatusCache, connect_redis
from taskmesh.ids import new_id
from taskmesh.names import Names
from taskmesh.records import RunRecord
from taskmesh.service_errors import CacheUnavailable
from taskmesh.states import RunState, Trigger
from tests.support import Isolation

pytestmark = pytest.mark.integration


def _run(job_id: str, state: RunState, version: int, queued: datetime, run_id: str | None = None) -> RunRecord:
    return RunRecord(
        id=run_id or new_id(),
        job_id=job_id,
        job_name="j",
        state=state,
        attempt=1,
        trigger=Trigger.MANUAL,
        version=version,
        queue_time=queued,
    )


async def test_writes_never_go_backwards(integration_isolation: Isolation) -> None:
    cache = StatusCache(connect_redis("redis://127.0.0.1:6379/0"), Names(integration_isolation.namespace), 60)
    job = new_id()
    now = datetime.now(UTC)
    older = _run(job, RunState.SUCCEEDED, 3, now - timedelta(seconds=5))
    newer_queued = _run(job, RunState.QUEUED, 1, now)
    newer_running = replace(newer_queued, state=RunState.RUNNING, version=2)

    await cache.put([newer_running])
    await cache.put([newer_queued])  # an older version of the same run arrives late
    await cache.put([older])  # an older run arrives late
    cached = await cache.get(job)
    assert cached is not None
    assert cached.id == newer_running.id
    assert cached.state == cached.RUNNING


async def test_a_burst_keeps_the_newest_per_job(integration_isolation: Isolation) -> None:
    cache = StatusCache(connect_redis("redis://127.0.0.1:6379/0"), Names(integration_isolation.namespace), 60)
    job = new_id()
    now = datetime.now(UTC)
    burst = [_run(job, RunState.QUEUED, 1, now + timedelta(milliseconds=i)) for i in range(20)]
    await cache.put(list(reversed(burst)))
    cached = await cache.get(job)
    assert cached is not None and cached.id == burst[-1].id


async def test_redis_down_reads_raise_and_writes_mark_stale() -> None:
    cache = StatusCache(connect_redis("redis://127.0.0.1:1/0"), Names("unreachable"), 60)
    with pytest.raises(CacheUnavailable):
        await cache.get(new_id())
    job = new_id()
    await cache.put([_run(job, RunState.QUEUED, 1, datetime.now(UTC))])  # does not raise
    assert cache.has_stale_entries
    assert await cache.get(job) is None  # a stale job reads as a miss, never as old data
