"""Run events for WatchRun: each change of a watched run, and its log lines, published on the
run's Redis channel (taskmesh.v1.RunEvent).

Only runs somebody watches are published: a watch registers its run in a Redis sorted set
(score: when the registration expires, refreshed while the watch lasts), and every publishing
process re-reads that set a few times a second. A watch that starts between two re-reads may
miss an event; it re-reads the run from PostgreSQL shortly after it starts, so it is only late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from taskmesh.convert import log_line_to_proto, run_to_proto
from taskmesh.names import Names
from taskmesh.records import LogEntry, RunRecord
from taskmesh.v1 import job_service_pb2

log = logging.getLogger(__name__)

REGISTRATION_SECONDS = 30.0


class RunEvents:
    def __init__(self, client: aioredis.Redis, names: Names) -> None:
        self._redis = client
        self._names = names
        self._watched: frozenset[str] = frozenset()

    async def refresh(self) -> None:
        """Re-read which runs are watched (publishers call this a few times a second)."""
        try:
            members = await self._redis.zrangebyscore(self._names.watched_runs_key, time.time(), "+inf")
        except (RedisError, OSError):
            return  # keep the last known set; watches poll PostgreSQL meanwhile
        self._watched = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def add_publishes(self, pipe: Pipeline, runs: Sequence[RunRecord], logs: Sequence[LogEntry]) -> None:
        """Queue the PUBLISH commands for the watched runs among these changes."""
        if not self._watched:
            return
        for entry in logs:  # lines first: they precede the outcome that ends the watch
            if entry.ref.run_id in self._watched:
                event = job_service_pb2.RunEvent(log=log_line_to_proto(entry))
                pipe.publish(self._names.run_events_channel(entry.ref.run_id), event.SerializeToString())
        for run in runs:
            if run.id in self._watched:
                event = job_service_pb2.RunEvent(run=run_to_proto(run))
                pipe.publish(self._names.run_events_channel(run.id), event.SerializeToString())

    async def register(self, run_id: str) -> None:
        """Mark a run as watched (call again before REGISTRATION_SECONDS to keep it)."""
        key = self._names.watched_runs_key
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {run_id: time.time() + REGISTRATION_SECONDS})
            pipe.zremrangebyscore(key, "-inf", time.time())  # forget abandoned registrations
            await pipe.execute()

    async def unregister(self, run_id: str) -> None:
        # Another watch of the same run keeps refreshing its own registration: removing the
        # member only delays that one until its next refresh.
        await self._redis.zrem(self._names.watched_runs_key, run_id)
