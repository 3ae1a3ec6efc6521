"""The transactional outbox: work units written with their runs, published by relays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskmesh.db.engine import transaction
from taskmesh.records import AttemptRef

# Rows stay locked (and invisible to other relays) until the publishing transaction ends.
TAKE_BATCH = text(
    """
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    ) RETURNING run_id::text AS run_id, attempt
    """
)
COUNT_BACKLOG = text("SELECT count(*) FROM outbox")

NOTIFY_CHANNEL = "taskmesh_outbox"  # set by the outbox_notify trigger (migration 0001)


class OutboxRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def take_batch(self, limit: int) -> AsyncIterator[list[AttemptRef]]:
        """Yield up to `limit` pending work units; they are deleted only if the block succeeds."""
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(TAKE_BATCH, {"limit": limit})).all()
            yield [AttemptRef(run_id=row.run_id, attempt=row.attempt) for row in rows]

    async def backlog(self) -> int:
        async with transaction(self._engine) as conn:
            return int((await conn.execute(COUNT_BACKLOG)).scalar_one())
