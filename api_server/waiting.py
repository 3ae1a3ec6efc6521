"""Why a QUEUED run waits: work is routed by executor kind (taskmesh.names), so a run whose
queue has no consumer waits, visibly, until a worker that can run it connects.

The api_server's health monitor samples the consumer count of every work queue from RabbitMQ
(what any number of schedulers and api_servers see alike); a sample older than `max_age` tells
nothing, and then no reason is given.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from taskmesh.broker.probe import QueueDepth
from taskmesh.names import Names
from taskmesh.records import RunRecord
from taskmesh.states import RunState


class WorkerCapacity:
    def __init__(self, names: Names, max_age: float) -> None:
        self._names = names
        self._max_age = max_age
        self._consumers: dict[str, int] = {}
        self._seen_at = float("-inf")

    def observe(self, depths: Mapping[str, QueueDepth]) -> None:
        self._consumers = {queue: depth.consumers for queue, depth in depths.items()}
        self._seen_at = time.monotonic()

    def reason(self, run: RunRecord) -> str:
        if run.state != RunState.QUEUED or run.executor_kind is None:
            return ""
        if time.monotonic() - self._seen_at > self._max_age:
            return ""
        return waiting_reason(run.executor_kind, self._consumers.get(self._names.queue_for(run.executor_kind)))


def waiting_reason(kind: str, consumers: int | None) -> str:
    """The reason a QUEUED run of this executor kind waits, given its queue's consumers."""
    if consumers is None or consumers > 0:
        return ""
    return f"no connected worker can run {kind}"
