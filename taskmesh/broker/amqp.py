"""pika's AsyncioConnection with awaitables instead of callbacks.

Everything runs on the event loop's thread, so acks and publishes need no thread hand-off.
When a channel or connection closes, every pending operation fails with BrokerUnavailable;
reconnecting is the owner's job (see scheduler.relay and worker.consumer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from taskmesh.service_errors import BrokerUnavailable

log = logging.getLogger(__name__)


PERSISTENT = 2
T = TypeVar("T")


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True)
class Delivery:
    """A message taken off a queue; settle it exactly once with ack, nack or reject."""

    channel: AmqpChannel
    delivery_tag: int
    body: bytes
    redelivered: bool
    message_type: str | None

    def ack(self) -> None:
        self.channel.settle(self.delivery_tag, "ack")

    def requeue(self) -> None:
        self.channel.settle(self.delivery_tag, "requeue")

    def dead_letter(self) -> None:
        """Reject without requeue: the queue's dead-letter exchange takes the message."""
        self.channel.settle(self.delivery_tag, "reject")


class AmqpConnection:
    def __init__(self, connection: AsyncioConnection, closed: asyncio.Future[Exception]) -> None:
        self._connection = connection
        self.closed = closed  # resolves (with the reason) when the connection is gone

    @classmethod
    async def open(cls, url: str, *, name: str = "taskmesh", heartbeat: int = 10) -> AmqpConnection:
        loop = asyncio.get_running_loop()
        params = pika.URLParameters(url)
        params.heartbeat = heartbeat
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": name}
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()
        closed: asyncio.Future[Exception] = loop.create_future()

        def on_open_error(_conn: Any, error: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(BrokerUnavailable(f"cannot connect to RabbitMQ: {error}"))

        def on_close(_conn: Any, reason: Exception) -> None:
            if not opened.done():
                opened.set_exception(BrokerUnavailable(f"cannot connect to RabbitMQ: {reason}"))
            if not closed.done():
                closed.set_result(reason)

        AsyncioConnection(
            params,
            on_open_callback=lambda conn: _settle(opened, conn),
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        try:
            connection = await asyncio.wait_for(opened, timeout=10)
        except TimeoutError as error:
            raise BrokerUnavailable("timed out connecting to RabbitMQ") from error
        return cls(connection, closed)

    async def channel(self) -> AmqpChannel:
        future: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        try:
            self._connection.channel(on_open_callback=future.set_result)
        except AMQPError as error:
            raise BrokerUnavailable(f"cannot open a channel: {error!r}") from error
        done, _ = await asyncio.wait({future, self.closed}, return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            raise BrokerUnavailable("connection closed while opening a channel")
        return AmqpChannel(future.result())

    @property
    def is_open(self) -> bool:
        return bool(self._connection.is_open) and not self.closed.done()

    async def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout=5)
        except TimeoutError:
            log.warning("RabbitMQ connection did not close within 5s")


class AmqpChannel:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._pending: set[asyncio.Future[Any]] = set()
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._returned: set[int] = set()
        self._next_tag = 0
        self.closed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        channel.add_on_close_callback(self._on_close)

    @property
    def is_open(self) -> bool:
        return bool(self._channel.is_open)

    def _on_close(self, _channel: Channel, reason: Exception) -> None:
        error = BrokerUnavailable(f"RabbitMQ channel closed: {reason}")
        for future in [*self._pending, *self._confirms.values()]:
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._confirms.clear()
        if not self.closed.done():
            self.closed.set_result(reason)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Invoke a pika method taking `callback=` and await that callback."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        try:
            method(*args, callback=lambda frame: _settle(future, frame), **kwargs)
        except AMQPError as error:
            raise BrokerUnavailable(f"RabbitMQ call failed: {error!r}") from error
        try:
            return await future
        finally:
            self._pending.discard(future)

    async def declare_exchange(self, name: str, kind: str) -> None:
        await self._call(self._channel.exchange_declare, exchange=name, exchange_type=kind, durable=True)

    async def declare_queue(self, name: str, arguments: dict[str, Any]) -> None:
        await self._call(self._channel.queue_declare, queue=name, durable=True, arguments=arguments)

    async def bind_queue(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._call(self._channel.queue_bind, queue=queue, exchange=exchange, routing_key=routing_key)

    async def queue_depth(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of a queue."""
        frame = await self._call(self._channel.queue_declare, queue=queue, passive=True)
        return int(frame.method.message_count), int(frame.method.consumer_count)

    async def enable_confirms(self) -> None:
        self._channel.add_on_return_callback(self._on_return)
        await self._call(self._channel.confirm_delivery, ack_nack_callback=self._on_confirm)

    async def set_prefetch(self, count: int) -> None:
        await self._call(self._channel.basic_qos, prefetch_count=count)

    async def publish_confirmed(
        self, exchange: str, routing_key: str, bodies: Sequence[bytes], message_type: str
    ) -> None:
        """Publish persistent, mandatory messages; return once RabbitMQ confirmed every one."""
        await self.publish_routed(exchange, [(routing_key, body) for body in bodies], message_type)

    async def publish_routed(
        self, exchange: str, messages: Sequence[tuple[str, bytes]], message_type: str
    ) -> None:
        """publish_confirmed with a routing key per message: (routing key, body) pairs."""
        loop = asyncio.get_running_loop()
        futures = []
        for routing_key, body in messages:
            self._next_tag += 1
            tag = self._next_tag
            future: asyncio.Future[None] = loop.create_future()
            self._confirms[tag] = future
            futures.append(future)
            properties = BasicProperties(delivery_mode=PERSISTENT, message_id=str(tag), type=message_type)
            try:
                self._channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
            except AMQPError as error:
                raise BrokerUnavailable(f"publish failed: {error!r}") from error
        await asyncio.gather(*futures)

    def _on_return(self, _ch: Channel, _method: Basic.Return, properties: BasicProperties, _body: bytes) -> None:
        if properties.message_id and properties.message_id.isdigit():
            self._returned.add(int(properties.message_id))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        tags = (
            [t for t in self._confirms if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        )
        for tag in tags:
            future = self._confirms.pop(tag, None)
            if future is None or future.done():
                continue
            if not acked:
                future.set_exception(BrokerUnavailable("RabbitMQ refused the message (nack)"))
            elif tag in self._returned:
                self._returned.discard(tag)
                future.set_exception(BrokerUnavailable("message was unroutable (is the queue declared?)"))
            else:
                future.set_result(None)

    def consume(self, queue: str, on_delivery: Callable[[Delivery], None]) -> str:
        def on_message(_ch: Channel, method: Basic.Deliver, props: BasicProperties, body: bytes) -> None:
            on_delivery(Delivery(self, method.delivery_tag, body, bool(method.redelivered), props.type))

        try:
            return str(self._channel.basic_consume(queue, on_message, auto_ack=False))
        except AMQPError as error:
            raise BrokerUnavailable(f"cannot consume from {queue}: {error!r}") from error

    async def cancel(self, consumer_tag: str) -> None:
        if self._channel.is_open:
            await self._call(self._channel.basic_cancel, consumer_tag)

    def settle(self, delivery_tag: int, how: str) -> None:
        """Ack, requeue or reject; a no-op once the channel is gone (RabbitMQ redelivers)."""
        if not self._channel.is_open:
            return
        try:
            if how == "ack":
                self._channel.basic_ack(delivery_tag)
            elif how == "requeue":
                self._channel.basic_nack(delivery_tag, requeue=True)
            else:
                self._channel.basic_reject(delivery_tag, requeue=False)
        except AMQPError as error:
            log.warning("could not %s delivery %d: %r", how, delivery_tag, error)

    async def close(self) -> None:
        if self._channel.is_open:
            self._channel.close()
