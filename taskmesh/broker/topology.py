"""The RabbitMQ topology, declared (idempotently) by every process that touches it.

work exchange (direct) --run--> work queue (quorum, durable) --rejected--> dead exchange (fanout)
--> dead-letter queue. Work units are small protobuf messages (taskmesh.v1.WorkUnit).
"""

from __future__ import annotations

from taskmesh.broker.amqp import AmqpChannel
from taskmesh.names import WORK_ROUTING_KEY, Names


async def declare_topology(channel: AmqpChannel, names: Names) -> None:
    await channel.declare_exchange(names.dead_letter_exchange, "fanout")
    await channel.declare_queue(names.dead_letter_queue, {"x-queue-type": "quorum"})
    await channel.bind_queue(names.dead_letter_queue, names.dead_letter_exchange, "")
    await channel.declare_exchange(names.work_exchange, "direct")
    await channel.declare_queue(
        names.work_queue,
        {"x-queue-type": "quorum", "x-dead-letter-exchange": names.dead_letter_exchange},
    )
    await channel.bind_queue(names.work_queue, names.work_exchange, WORK_ROUTING_KEY)
