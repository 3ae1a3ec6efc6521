"""The RabbitMQ topology, declared (idempotently) by every process that touches it.

work exchange (direct) --executor kind--> work queue (quorum, durable) --rejected--> dead exchange
(fanout) --> dead-letter queue. Work is routed by capability: the kinds every worker runs share
the main work queue, each optional kind (shell) has a queue of its own that only workers running
it consume (see taskmesh.names). Work units are small protobuf messages (taskmesh.v1.WorkUnit).
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
        await channel.declare_queue(
            queue, {"x-queue-type": "quorum", "x-dead-letter-exchange": names.dead_letter_exchange}
        )
        for routing_key in routing_keys:
            await channel.bind_queue(queue, names.work_exchange, routing_key)
