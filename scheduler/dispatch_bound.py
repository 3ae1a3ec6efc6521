"""Flow control's in-flight bound on dispatch (README "Flow control", priorities).

RabbitMQ's queues are FIFO: a high-priority work unit published behind 10,000 others waits for
all of them. So the relay keeps at most about `max_in_flight` work units waiting (ready) in each
work queue, and the backlog waits in the outbox, read highest priority first. The count is
RabbitMQ's own (a passive queue.declare answers a queue's ready messages, whichever relay
published them), asked when a queue is first published to, again once what this relay published
since could have filled it (consumers only take away, so the last answer plus what was published
since bounds it), and, while a queue is full, every `recheck_interval`; nothing is counted in
PostgreSQL, and a relay that keeps up with its workers asks once per few hundred units. A queue is full once it has room for fewer than a quarter of
the bound, so that takes stay large. A full queue holds back only the routes that lead to it
(a queue nobody consumes holds back its own runs, nobody else's). Several relays, and the batch
a relay publishes into a queue with room, may overshoot the bound: it bounds latency, it is not
a guarantee, and correctness never depends on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DispatchBound:
    """At most about max_in_flight work units ready in each work queue (0: no bound)."""

    max_in_flight: int = 0
    recheck_interval: float = 0.05

    @property
    def min_room(self) -> int:
        """A queue with room for fewer than this many units is full."""
        return max(1, self.max_in_flight // 4)


class QueueDepths(Protocol):
    async def queue_depth(self, queue: str) -> tuple[int, int]: ...


class FullQueues:
    """The work queues the bound holds back now, and the routes (outbox route texts) that
    lead to each queue, learned from the batches published."""

    def __init__(self, bound: DispatchBound) -> None:
        self._bound = bound
        self._ready: dict[str, int] = {}  # full queue -> ready units when last seen
        self._at_most: dict[str, int] = {}  # other queue -> ready units when last seen + published since
        self._queue_of: dict[str, str] = {}  # route text -> its queue

    @property
    def holding(self) -> bool:
        return bool(self._ready)

    def excluded_routes(self) -> list[str]:
        """The routes a take leaves out: those whose queue is full."""
        return [route for route, queue in self._queue_of.items() if queue in self._ready]

    async def published(self, channel: QueueDepths, routes: Iterable[tuple[str, str]]) -> None:
        """After a publish of units on these (route text, queue) pairs: which of their queues are full now."""
        if self._bound.max_in_flight <= 0:
            return
        published: dict[str, int] = {}
        for route, queue in routes:
            self._queue_of[route] = queue
            published[queue] = published.get(queue, 0) + 1
        for queue, count in sorted(published.items()):
            at_most = self._at_most.get(queue)
            if at_most is None or self._is_full(at_most + count):
                await self._look(channel, queue)
            else:
                self._at_most[queue] = at_most + count

    async def recheck(self, channel: QueueDepths) -> bool:
        """Look at the full queues again; whether any of them drained since it was last seen."""
        drained = False
        for queue, before in list(self._ready.items()):
            drained = await self._look(channel, queue) < before or drained
        return drained

    async def _look(self, channel: QueueDepths, queue: str) -> int:
        ready, _consumers = await channel.queue_depth(queue)
        if self._is_full(ready):
            self._ready[queue] = ready
            self._at_most.pop(queue, None)
        else:
            self._ready.pop(queue, None)
            self._at_most[queue] = ready
        return ready

    def _is_full(self, ready: int) -> bool:
        return self._bound.max_in_flight - ready < self._bound.min_room
