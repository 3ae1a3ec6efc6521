"""Queue depth and consumer count from RabbitMQ, by passive declare on a connection of its own.

One AMQP round trip per queue per look. A passive declare of a missing queue closes the
channel (404); after any failure the next look starts on a fresh connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskmesh.broker.amqp import AmqpChannel, AmqpConnection
from taskmesh.broker.topology import declare_topology
from taskmesh.names import Names


@dataclass(frozen=True)
class QueueDepth:
    messages: int  # ready for delivery (not counting those delivered and unacknowledged)
    consumers: int


class QueueProbe:
    def __init__(self, amqp_url: str, names: Names, purpose: str) -> None:
        self._amqp_url = amqp_url
        self._names = names
        self._purpose = purpose
        self._connection: AmqpConnection | None = None
        self._channel: AmqpChannel | None = None

    async def depths(self, queues: Sequence[str]) -> dict[str, QueueDepth]:
        """Raises BrokerUnavailable when RabbitMQ cannot be reached."""
        try:
            channel = await self._open_channel()
            found = {}
            for queue in queues:
                messages, consumers = await channel.queue_depth(queue)
                found[queue] = QueueDepth(messages, consumers)
            return found
        except BaseException:
            # Lost, refused, or given up on (a caller's timeout): the next look reconnects.
            self._channel = None
            raise

    async def _open_channel(self) -> AmqpChannel:
        if self._connection is not None and self._connection.is_open and self._channel and self._channel.is_open:
            return self._channel
        await self.close()
        self._connection = await AmqpConnection.open(
            self._amqp_url, name=f"{self._names.namespace}-{self._purpose}", heartbeat=10
        )
        self._channel = await self._connection.channel()
        await declare_topology(self._channel, self._names)  # the queues exist before the first look
        return self._channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()
