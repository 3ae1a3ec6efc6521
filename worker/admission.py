"""Admission of work units into the pipeline, one per free slot, so that a work unit the worker
holds but has not started is always waiting here, where it can be handed back.

RabbitMQ delivers up to slots + prefetch extra work units; those beyond the slots wait in
arrival order. When the worker stops taking work (SIGTERM), `close()` hands every waiting one
back at once (nack with requeue: another worker runs it) and any that still arrive after it,
while the work in the slots goes on to its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from taskmesh.broker.amqp import Delivery
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)


class Admission:
    def __init__(self, pipeline: Pipeline, slots: int) -> None:
        self._pipeline = pipeline
        self._free = slots
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._closed = False
        self.handed_back = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    async def handle(self, delivery: Delivery) -> None:
        if not await self._enter():
            self.handed_back += 1
            delivery.requeue()
            return
        try:
            if delivery.channel.is_open:  # else its channel died while it waited: RabbitMQ redelivers it
                await self._pipeline.handle(delivery)
        finally:
            self._leave()

    def close(self) -> int:
        """Admit nothing more; hand back what waits (returns how many)."""
        self._closed = True
        handed = 0
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(False)
                handed += 1
        if handed:
            log.info("handed back %d work units not started yet", handed)
        return handed

    async def _enter(self) -> bool:
        """True once a slot is this work unit's; False if admission closed first."""
        if self._closed:
            return False
        if self._free > 0:
            self._free -= 1
            return True
        ticket: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        try:
            return await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled() and ticket.result():
                self._leave()  # the slot came with the cancellation: pass it on
            raise

    def _leave(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(True)
                return
        self._free += 1
