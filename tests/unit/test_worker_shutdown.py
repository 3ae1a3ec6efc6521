"""Winding a worker down: done when the consumer drained and nothing claimed is unsettled;
after the grace period the attempts still running are stopped as lost."""

from __future__ import annotations

import asyncio
from typing import cast

from taskmesh.records import AttemptRef
from worker.pipeline import Pipeline
from worker.shutdown import wind_down


class FakePipeline:
    """Attempts run until stopped; the consumer drains once none is left."""

    def __init__(self, refs: list[AttemptRef]) -> None:
        self.running = list(refs)
        self.stopped: list[tuple[AttemptRef, str]] = []
        self.idle = asyncio.Event()
        if not refs:
            self.idle.set()

    def executing(self) -> list[AttemptRef]:
        return list(self.running)

    def stop(self, ref: AttemptRef, reason: str) -> None:
        self.stopped.append((ref, reason))
        self.running.remove(ref)
        if not self.running:
            self.idle.set()


async def test_work_that_finishes_within_the_grace_period_is_left_alone() -> None:
    pipeline = FakePipeline([])
    consumer = asyncio.create_task(pipeline.idle.wait())
    assert await wind_down(cast(asyncio.Task[None], consumer), cast(Pipeline, pipeline), grace=5) is True
    assert pipeline.stopped == []


async def test_attempts_still_running_after_the_grace_period_are_stopped_as_lost() -> None:
    refs = [AttemptRef("r1", 1), AttemptRef("r2", 3)]
    pipeline = FakePipeline(refs)
    consumer = asyncio.create_task(pipeline.idle.wait())
    assert await wind_down(cast(asyncio.Task[None], consumer), cast(Pipeline, pipeline), grace=0.2) is False
    assert pipeline.stopped == [(refs[0], "lost"), (refs[1], "lost")]
    assert consumer.done()
