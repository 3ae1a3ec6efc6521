"""How a worker winds down after SIGTERM, once its consumer is cancelled and what waited for a
slot was handed back (worker.admission): the attempts in its slots get the grace period to
finish and be acknowledged; those still running then are stopped and reported lost, which the
scheduler retries elsewhere as the run's policy allows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from worker.pipeline import Pipeline

log = logging.getLogger(__name__)

# After the grace period, seconds the stopped attempts get to have their outcome recorded.
SETTLE_SECONDS = 5.0
POLL_SECONDS = 0.1


async def _finished(consumer_task: asyncio.Task[None], pipeline: Pipeline, seconds: float) -> bool:
    """Wait until the consumer is done and no claimed attempt is left unsettled."""
    deadline = time.monotonic() + seconds
    while not (consumer_task.done() and not pipeline.executing()):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


async def wind_down(consumer_task: asyncio.Task[None], pipeline: Pipeline, grace: float) -> bool:
    """True if everything held finished within the grace period."""
    if await _finished(consumer_task, pipeline, grace):
        return True
    running = pipeline.executing()
    log.warning(
        "grace period of %.0fs over: stopping %d attempts still running (reported lost, retried elsewhere)",
        grace,
        len(running),
    )
    for ref in running:
        pipeline.stop(ref, "lost")
    if not await _finished(consumer_task, pipeline, SETTLE_SECONDS):
        log.warning("outcomes not settled; RabbitMQ redelivers what was not acknowledged")
    consumer_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer_task
    return False
