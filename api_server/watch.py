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
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from taskmesh.cache.events import REGISTRATION_SECONDS, RunEvents
from taskmesh.convert import log_line_to_proto, run_to_proto
from taskmesh.db.logs import LogRepository
from taskmesh.db.runs import RunRepository
from taskmesh.names import Names
from taskmesh.states import TERMINAL_STATES
from taskmesh.v1 import job_service_pb2, run_pb2

log = logging.getLogger(__name__)

RunEvent = job_service_pb2.RunEvent
FIRST_RECHECK_SECONDS = 0.5
TERMINAL = {run_pb2.Run.State.Value(state.value) for state in TERMINAL_STATES}


@dataclass
class _Seen:
    """What a watch has sent: events that repeat it (from the channel and the re-reads) are
    dropped."""

    version: int = 0
    last_line_id: int = 0
    lines: set[tuple[int, int, str]] = field(default_factory=set)

    def new_run(self, run: run_pb2.Run) -> bool:
        if run.version <= self.version:
            return False
        self.version = run.version
        return True

    def new_line(self, line: run_pb2.LogLine) -> bool:
        key = (line.attempt, line.time.ToNanoseconds() // 1000, line.text)
        if key in self.lines:
            return False
        self.lines.add(key)
        return True


class RunWatcher:
    def __init__(
        self,
        runs: RunRepository,
        logs: LogRepository,
        redis: aioredis.Redis,
        names: Names,
        recheck_seconds: float = 2.0,
    ) -> None:
        self._runs = runs
        self._logs = logs
        self._redis = redis
        self._names = names
        self._registry = RunEvents(redis, names)
        self._recheck = recheck_seconds

    async def watch(self, run_id: str) -> AsyncIterator[RunEvent]:
        """The run as it is, its output so far, then its changes and output as they happen,
        until it finishes."""
        pubsub = await self._subscribe(run_id)  # before the first read: nothing falls in between
        registration = asyncio.create_task(self._keep_registered(run_id)) if pubsub is not None else None
        seen = _Seen()
        try:
            run = run_to_proto(await self._runs.get(run_id))
            seen.new_run(run)
            yield RunEvent(run=run)
            if run.state in TERMINAL:
                return
            async for event in self._stored_lines(run_id, seen):
                yield event
            async for event in self._live(run_id, pubsub, seen):
                yield event
                if event.HasField("run") and event.run.state in TERMINAL:
                    return
        finally:
            if registration is not None:
                registration.cancel()
                with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                    await self._registry.unregister(run_id)
            if pubsub is not None:
                await _close(pubsub)

    async def _keep_registered(self, run_id: str) -> None:
        """Tell publishers this run is watched, for as long as the watch lasts."""
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self._registry.register(run_id)
            await asyncio.sleep(REGISTRATION_SECONDS / 3)

    async def _subscribe(self, run_id: str) -> aioredis.client.PubSub | None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._names.run_events_channel(run_id))
        except (RedisError, OSError) as error:
            log.warning("watch of %s falls back to polling: %s", run_id, error)
            await _close(pubsub)
            return None
        return pubsub

    async def _stored_lines(self, run_id: str, seen: _Seen) -> AsyncIterator[RunEvent]:
        """Log lines stored since the last read that the watch has not sent yet."""
        while True:
            page = await self._logs.read(run_id, None, seen.last_line_id, limit=1000)
            for entry in page.lines:
                line = log_line_to_proto(entry)
                if seen.new_line(line):
                    yield RunEvent(log=line)
            seen.last_line_id = page.last_line_id or seen.last_line_id
            if page.next_after_id is None:
                return

    async def _live(
        self, run_id: str, pubsub: aioredis.client.PubSub | None, seen: _Seen
    ) -> AsyncIterator[RunEvent]:
        """New events from the channel, and from re-reading PostgreSQL every few seconds (the
        first time soon, as publishers take a moment to learn that the run is watched)."""
        next_check = time.monotonic() + FIRST_RECHECK_SECONDS
        caught_up = False
        while True:
            message = await _next_message(pubsub, max(0.0, next_check - time.monotonic()))
            if message is not None:
                event = RunEvent.FromString(message)
                if not caught_up or (event.HasField("run") and event.run.state in TERMINAL):
                    # Lines are stored before they are published: the first live line (or the
                    # end) means every earlier line can be read, in order, from PostgreSQL.
                    caught_up = True
                    async for line in self._stored_lines(run_id, seen):
                        yield line
                if (event.HasField("run") and seen.new_run(event.run)) or (
                    event.HasField("log") and seen.new_line(event.log)
                ):
                    yield event
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self._recheck
                async for line in self._stored_lines(run_id, seen):
                    yield line
                run = run_to_proto(await self._runs.get(run_id))
                if seen.new_run(run):
                    yield RunEvent(run=run)


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
