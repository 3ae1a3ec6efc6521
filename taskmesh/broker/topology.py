"""The RabbitMQ topology, declared (idempotently) by every process that touches it.

work exchange (direct) --queue name as routing key--> work queue (quorum, durable) --rejected-->
dead exchange (fanout) --> dead-letter queue. Work is routed by pool and capability (see
taskmesh.names): every pool has a main queue (noop, sleep, http), a queue per optional executor
kind (shell) and a queue per Python task. The default pool's main and shell queues always
exist; the others are declared by the first relay that publishes to them and by every worker
that consumes them, so a run's work unit is durable in its queue whether or not a worker
serving it is connected. Work units are small protobuf messages (taskmesh.v1.WorkUnit).
"""

from __future__ import annotations

from taskmesh.broker.amqp import AmqpChannel
from taskmesh.names import Names


async def declare_topology(channel: AmqpChannel, names: Names) -> None:
    await channel.declare_exchange(names.dead_letter_exchange, "fanout")
    await channel.declare_queue(names.dead_letter_queue, {"x-queue-type": "quorum"})
    await channel.bind_queue(names.dead_letter_queue, names.dead_letter_exchange, "")
    await channel.declare_exchange(names.work_exchange, "direct")
    for queue, routing_keys in names.work_bindings().items():
        await _declare(channel, names, queue)
        for routing_key in routing_keys:
            if routing_key != queue:
                await channel.bind_queue(queue, names.work_exchange, routing_key)


async def declare_work_queue(channel: AmqpChannel, names: Names, queue: str) -> None:
    """A pool's, capability's or task's work queue, bound by its own name (declare_topology first)."""
    await _declare(channel, names, queue)


async def _declare(channel: AmqpChannel, names: Names, queue: str) -> None:
    await channel.declare_queue(
        queue, {"x-queue-type": "quorum", "x-dead-letter-exchange": names.dead_letter_exchange}
    )
    await channel.bind_queue(queue, names.work_exchange, queue)
