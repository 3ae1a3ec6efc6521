"""Group commit: callers submit one item each; items that arrive while a flush is in flight
are flushed together, so a burst costs a handful of round trips and a lone request waits for
none. Used for run creation, claims and outcome reports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# flush(items) returns one result per item, in order; an Exception instance fails that item only.
FlushFn = Callable[[Sequence[Item]], Awaitable[Sequence["Result | BaseException"]]]


class GroupCommitter(Generic[Item, Result]):
    def __init__(self, flush: FlushFn[Item, Result], *, max_batch: int = 500, max_in_flight: int = 2) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1 or len(self._pending) >= self._max_batch:
            self._start_flusher()
        return await future

    def _start_flusher(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run_flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_flush(self) -> None:
        async with self._slots:
            if not self._pending:
                return
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if self._pending:
                self._start_flusher()
            await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
