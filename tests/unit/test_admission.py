"""Admission lets one work unit per free slot into the pipeline, in arrival order; at shutdown
it hands back (requeues) what waits and what still arrives, while started work goes on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from taskmesh.broker.amqp import Delivery
from worker.admission import Admission
from worker.pipeline import Pipeline


@dataclass
class FakeChannel:
    is_open: bool = True


@dataclass
class FakeDelivery:
    name: str
    channel: FakeChannel = field(default_factory=FakeChannel)
    settled: list[str] = field(default_factory=list)

    def requeue(self) -> None:
        self.settled.append("requeue")


class FakePipeline:
    """Work runs until the test releases it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def handle(self, delivery: Any) -> None:
        self.started.append(delivery.name)
        self.release[delivery.name] = event = asyncio.Event()
        await event.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _admit(admission: Admission, *deliveries: FakeDelivery) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(admission.handle(cast(Delivery, d))) for d in deliveries]


async def test_one_work_unit_per_slot_in_arrival_order() -> None:
    pipeline = FakePipeline()
    admission = Admission(cast(Pipeline, pipeline), slots=2)
    a, b, c, d = (FakeDelivery(n) for n in "abcd")
    tasks = _admit(admission, a, b, c, d)
    await _settle()
    assert pipeline.started == ["a", "b"] and admission.waiting == 2
    pipeline.release["b"].set()
    await _settle()
    assert pipeline.started == ["a", "b", "c"] and admission.waiting == 1
    pipeline.release["a"].set()
    await _settle()
    assert pipeline.started == ["a", "b", "c", "d"] and admission.waiting == 0
    pipeline.release["c"].set()
    pipeline.release["d"].set()
    await asyncio.gather(*tasks)
    assert pipeline.started == ["a", "b", "c", "d"] and admission.handed_back == 0


async def test_closing_hands_back_what_waits_and_lets_started_work_finish() -> None:
    pipeline = FakePipeline()
    admission = Admission(cast(Pipeline, pipeline), slots=1)
    running, waiting_1, waiting_2 = FakeDelivery("run"), FakeDelivery("w1"), FakeDelivery("w2")
    tasks = _admit(admission, running, waiting_1, waiting_2)
    await _settle()
    assert admission.close() == 2
    late = FakeDelivery("late")  # delivered before RabbitMQ saw the consumer's cancellation
    tasks += _admit(admission, late)
    await _settle()
    assert waiting_1.settled == waiting_2.settled == late.settled == ["requeue"]
    assert admission.handed_back == 3 and pipeline.started == ["run"]
    pipeline.release["run"].set()
    await asyncio.gather(*tasks)
    assert running.settled == []  # the pipeline settles what it ran


async def test_a_work_unit_whose_channel_died_while_waiting_is_skipped() -> None:
    pipeline = FakePipeline()
    admission = Admission(cast(Pipeline, pipeline), slots=1)
    first, orphan, third = FakeDelivery("first"), FakeDelivery("orphan"), FakeDelivery("third")
    tasks = _admit(admission, first, orphan, third)
    await _settle()
    orphan.channel.is_open = False  # RabbitMQ redelivers it to someone
    pipeline.release["first"].set()
    await _settle()
    assert pipeline.started == ["first", "third"]
    pipeline.release["third"].set()
    await asyncio.gather(*tasks)


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_the_slot_on() -> None:
    pipeline = FakePipeline()
    admission = Admission(cast(Pipeline, pipeline), slots=1)
    first, cancelled, third = FakeDelivery("first"), FakeDelivery("cancelled"), FakeDelivery("third")
    tasks = _admit(admission, first, cancelled, third)
    await _settle()
    pipeline.release["first"].set()
    await asyncio.sleep(0)  # first leaves: the slot goes to "cancelled", which has not resumed yet
    tasks[1].cancel()
    await _settle()
    assert pipeline.started == ["first", "third"]
    pipeline.release["third"].set()
    await asyncio.gather(tasks[0], tasks[2])
