"""WatchRun: a run's changes and log lines as they happen.

Events arrive over the run's Redis channel (published by whichever process changed the run);
the run is also re-read from PostgreSQL now and then, so a lost message, or Redis being down
altogether, only delays a watcher. Run events are ordered by the run's version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from taskmesh.convert import run_to_proto
from taskmesh.db.runs import RunRepository
from taskmesh.names import Names
from taskmesh.v1 import job_service_pb2, run_pb2

log = logging.getLogger(__name__)

RunEvent = job_service_pb2.RunEvent
TERMINAL = {run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED, run_pb2.Run.CANCELLED}


class RunWatcher:
    def __init__(
        self, runs: RunRepository, redis: aioredis.Redis, names: Names, recheck_seconds: float = 2.0
    ) -> None:
        self._runs = runs
        self._redis = redis
        self._names = names
        self._recheck = recheck_seconds

    async def watch(self, run_id: str) -> AsyncIterator[RunEvent]:
        pubsub = await self._subscribe(run_id)  # before the first read: nothing falls in between
        try:
            run = run_to_proto(await self._runs.get(run_id))
            yield RunEvent(run=run)
            last_version = run.version
            if run.state in TERMINAL:
                return
            async for event in self._events(run_id, pubsub):
                if event.HasField("run"):
                    if event.run.version <= last_version:
                        continue
                    last_version = event.run.version
                yield event
                if event.HasField("run") and event.run.state in TERMINAL:
                    return
        finally:
            if pubsub is not None:
                await _close(pubsub)

    async def _subscribe(self, run_id: str) -> aioredis.client.PubSub | None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._names.run_events_channel(run_id))
        except (RedisError, OSError) as error:
            log.warning("watch of %s falls back to polling: %s", run_id, error)
            await _close(pubsub)
            return None
        return pubsub

    async def _events(self, run_id: str, pubsub: aioredis.client.PubSub | None) -> AsyncIterator[RunEvent]:
        """Events from the channel, plus the run re-read from PostgreSQL every few seconds."""
        next_check = time.monotonic() + self._recheck
        while True:
            timeout = max(0.0, next_check - time.monotonic())
            message = await _next_message(pubsub, timeout)
            if message is not None:
                yield RunEvent.FromString(message)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self._recheck
                yield RunEvent(run=run_to_proto(await self._runs.get(run_id)))


async def _next_message(pubsub: aioredis.client.PubSub | None, timeout: float) -> bytes | None:
    if pubsub is None:
        await asyncio.sleep(timeout)
        return None
    try:
        message = await pubsub.get_message(timeout=timeout)
    except (RedisError, OSError):
        await asyncio.sleep(timeout)  # Redis went away: keep polling PostgreSQL
        return None
    if message is None or message.get("type") != "message":
        return None
    data = message["data"]
    return data if isinstance(data, bytes) else str(data).encode()


async def _close(pubsub: aioredis.client.PubSub) -> None:
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call]
