"""The outbox relay: publishes work units written by run-creating transactions to RabbitMQ.

A relay leases a batch of rows, publishes them, and deletes them once RabbitMQ confirmed every
message, so a row disappears only once its message is durable. A crash in between publishes it
again when the lease ends; fencing on the attempt number makes the duplicate harmless. Several
relays (one per scheduler) share the outbox through FOR UPDATE SKIP LOCKED and the leases.
"""

from __future__ import annotations

import asyncio
import logging

from scheduler.dispatch_bound import DispatchBound, FullQueues
from scheduler.run_telemetry import ConnectionWatch
from taskmesh.aio import wait_event
from taskmesh.broker.amqp import AmqpChannel, AmqpConnection
from taskmesh.broker.topology import declare_topology, declare_work_queue
from taskmesh.db.outbox import OutboxBatch, OutboxRepository, take_limit
from taskmesh.names import Names
from taskmesh.reconnect import Reconnect
from taskmesh.service_errors import BrokerUnavailable, DatabaseUnavailable
from taskmesh.v1 import worker_service_pb2

log = logging.getLogger(__name__)

WORK_UNIT_TYPE = worker_service_pb2.WorkUnit.DESCRIPTOR.full_name
# A confirmed batch's rows wait this long for the next take to delete them with its own
# statement (at a steady rate one comes within milliseconds), then are deleted on their own.
CONFIRMED_DELETE_SECONDS = 0.05


class OutboxRelay:
    def __init__(
        self,
        outbox: OutboxRepository,
        amqp_url: str,
        names: Names,
        wake: asyncio.Event,
        batch_size: int,
        poll_interval: float,
        link: ConnectionWatch | None = None,
        bound: DispatchBound | None = None,
    ) -> None:
        self._outbox = outbox
        self._amqp_url = amqp_url
        self._names = names
        self._wake = wake
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self.published = 0
        # What the scheduler's health reads: the relay's current RabbitMQ connection.
        self.link = link or ConnectionWatch()
        self._reconnect = Reconnect("outbox relay", logger=log)
        self._bound = bound or DispatchBound()
        self._take_limit = take_limit(batch_size, self._bound.max_in_flight)
        self._recheck = self._bound.recheck_interval
        self._confirmed: list[int] = []  # outbox ids of the last batch RabbitMQ confirmed, not deleted yet

    async def run_forever(self) -> None:
        while True:
            try:
                connection = await AmqpConnection.open(self._amqp_url, name=f"{self._names.namespace}-relay")
                self.link.watch(connection)
                try:
                    channel = await connection.channel()
                    await declare_topology(channel, self._names)
                    declared = set(self._names.work_bindings())  # queues known on this channel
                    await channel.enable_confirms()
                    self._reconnect.connected()
                    await self._relay(channel, declared)
                finally:
                    await self._delete_confirmed()
                    await connection.close()
            except (BrokerUnavailable, DatabaseUnavailable) as error:
                await self._reconnect.failed(error)

    async def _relay(self, channel: AmqpChannel, declared: set[str]) -> None:
        full = FullQueues(self._bound)  # per channel: what it learned is looked at again on it
        while True:
            while await self._publish_batch(channel, declared, full) >= self._take_limit:
                pass
            notified = await self._wait_for_work(full)
            self._wake.clear()
            if full.holding:
                drained = await full.recheck(channel)
                if not notified:  # a whole interval passed: time enough to tell a stuck queue
                    self._recheck = self._next_recheck(drained)

    async def _wait_for_work(self, full: FullQueues) -> bool:
        """Until a NOTIFY (True) or the next look. The last confirmed batch is deleted by the
        next take, or on its own if no NOTIFY comes within CONFIRMED_DELETE_SECONDS."""
        if self._confirmed:
            if await wait_event(self._wake, CONFIRMED_DELETE_SECONDS):
                return True
            await self._delete_confirmed()
        return await wait_event(self._wake, await self._next_look(full))

    async def _delete_confirmed(self) -> None:
        """Delete the rows of the last confirmed batch, if that has not happened yet (a
        database out of reach leaves them to their lease: published again, harmlessly)."""
        confirmed, self._confirmed = self._confirmed, []
        if confirmed:
            try:
                await asyncio.shield(self._outbox.delete(confirmed))
            except (DatabaseUnavailable, asyncio.CancelledError) as error:
                log.warning("could not delete %d published outbox rows (%r)", len(confirmed), error)

    async def _next_look(self, full: FullQueues) -> float:
        """Flow control: while the in-flight bound holds rows back, look again soon (workers
        drain the queues without a NOTIFY); otherwise wait for the outbox's NOTIFY or the poll."""
        if full.holding and await self._outbox.pending():
            return self._recheck
        return self._poll_interval

    def _next_recheck(self, drained: bool) -> float:
        """Back to recheck_interval while a full queue drains; twice as long (up to the poll
        interval) each time none did for a whole interval, so that a queue nobody consumes
        costs next to nothing."""
        if drained:
            return self._bound.recheck_interval
        return min(self._poll_interval, 2 * self._recheck)

    async def _publish_batch(self, channel: AmqpChannel, declared: set[str], full: FullQueues) -> int:
        if not channel.is_open:  # lost while idle: reconnect before leasing rows to it
            raise BrokerUnavailable("the relay's RabbitMQ channel closed")
        batch = await self._outbox.take(self._take_limit, excluded=full.excluded_routes(), done=self._confirmed)
        self._confirmed = []  # deleted by the take
        if batch.units:
            queues = [self._names.route_queue(route) for route in batch.routes]
            messages = [  # routed by pool and capability: only workers that can run it take it
                (queue, worker_service_pb2.WorkUnit(run_id=u.run_id, attempt=u.attempt).SerializeToString())
                for u, queue in zip(batch.units, queues, strict=True)
            ]
            try:
                await self._declare_new(channel, declared, queues)
                await channel.publish_routed(self._names.work_exchange, messages, WORK_UNIT_TYPE)
            except BaseException:  # the connection broke (or we are stopping): rows go back now
                await self._release(batch)
                raise
            self._confirmed = batch.ids  # deleted by the next take, or soon (_wait_for_work)
            await full.published(channel, zip(batch.route_texts, queues, strict=True))
        self.published += len(batch.units)
        return len(batch.units)

    async def _declare_new(self, channel: AmqpChannel, declared: set[str], queues: list[str]) -> None:
        """The first work unit of a pool, capability or task declares its durable queue, so it
        is kept whether or not a worker serving it is connected (once per channel)."""
        for queue in dict.fromkeys(q for q in queues if q not in declared):
            await declare_work_queue(channel, self._names, queue)
            declared.add(queue)

    async def _release(self, batch: OutboxBatch) -> None:
        try:
            await asyncio.shield(self._outbox.release(batch))
            log.info("publish failed: released %d outbox rows for the next relay", len(batch.ids))
        except (DatabaseUnavailable, asyncio.CancelledError) as error:
            # The lease still bounds how long the rows wait.
            log.warning("could not release %d outbox rows (%r); they wait for their lease", len(batch.ids), error)
