"""Consumes work units from RabbitMQ (manual acks, bounded prefetch), reconnecting on loss.

A worker consumes only the work queues of its pools, of the executors it runs and of the Python
tasks its registry has (taskmesh.names.work_queues), one consumer each on one channel; it
declares each of them first (durable, dead-lettered), so it may connect before any run of its
pool exists. RabbitMQ applies the prefetch per consumer (quorum queues have no channel-wide
prefetch): each queue's flow is bounded by its own prefetch, and the worker's admission
(worker.admission) keeps what exceeds its slots waiting where it can be handed back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from taskmesh.aio import wait_event
from taskmesh.broker.amqp import AmqpConnection, Delivery
from taskmesh.broker.topology import declare_topology, declare_work_queue
from taskmesh.names import Names
from taskmesh.reconnect import Reconnect
from taskmesh.service_errors import BrokerUnavailable

log = logging.getLogger(__name__)


class WorkHandler(Protocol):
    async def handle(self, delivery: Delivery) -> None: ...


class WorkConsumer:
    def __init__(
        self,
        amqp_url: str,
        names: Names,
        pipeline: WorkHandler,
        prefetch: int,
        heartbeat: int = 10,
        queues: Sequence[str] = (),
        on_cancelled: Callable[[], object] = lambda: None,
        on_consuming: Callable[[bool], object] = lambda consuming: None,
    ) -> None:
        self._amqp_url = amqp_url
        self._queues = list(queues) or [names.work_queue]
        self._heartbeat = heartbeat
        self._names = names
        self._pipeline = pipeline
        self._prefetch = prefetch
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.consuming = asyncio.Event()
        # Told whenever consuming starts or stops (the session tells the scheduler).
        self._on_consuming = on_consuming
        # Called once RabbitMQ confirmed the consumer's cancellation at shutdown: nothing more
        # arrives, so what waits may be handed back without coming back here.
        self.on_cancelled = on_cancelled
        # A stop cuts the wait between attempts short.
        self._reconnect = Reconnect(
            "RabbitMQ consumer", sleep=lambda seconds: wait_event(self._stopping, seconds), logger=log
        )

    async def run_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._consume_once()
            except BrokerUnavailable as error:
                self._set_consuming(False)
                await self._reconnect.failed(error)
        # Stopped between connections: what is left still runs to its end (its acks are lost
        # with the channel; RabbitMQ redelivers and fencing drops the duplicates).
        self.on_cancelled()
        await self.drain()

    async def _consume_once(self) -> None:
        connection = await AmqpConnection.open(
            self._amqp_url, name=f"{self._names.namespace}-worker", heartbeat=self._heartbeat
        )
        try:
            channel = await connection.channel()
            await declare_topology(channel, self._names)
            for queue in self._queues:
                await declare_work_queue(channel, self._names, queue)
            await channel.set_prefetch(self._prefetch)
            consumer_tags = [channel.consume(queue, self._on_delivery) for queue in self._queues]
            self._set_consuming(True)
            self._reconnect.connected()
            log.info("consuming %s (prefetch %d)", ", ".join(self._queues), self._prefetch)
            stop = asyncio.ensure_future(self._stopping.wait())
            watched: set[asyncio.Future[Any]] = {stop, connection.closed, channel.closed}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self._stopping.is_set() and channel.is_open:
                for consumer_tag in consumer_tags:  # take no more work, keep acking what we hold
                    await channel.cancel(consumer_tag)
                self.on_cancelled()
                await self.drain()
            elif not self._stopping.is_set():
                raise BrokerUnavailable("connection to RabbitMQ lost")
        finally:
            self._set_consuming(False)
            await connection.close()

    def _set_consuming(self, consuming: bool) -> None:
        if consuming:
            self.consuming.set()
        else:
            self.consuming.clear()
        self._on_consuming(consuming)  # also a first connection that failed (the listener dedupes)

    def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._pipeline.handle(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the work units in hand to finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
