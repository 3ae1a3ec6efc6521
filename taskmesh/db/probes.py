"""Cheap queries behind health checks and gauges, polled in the background (never per run)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psycopg

from taskmesh.db.pg import Database, Query, libpq_url, statement
from taskmesh.db.runs import LEASED
from taskmesh.service_errors import DatabaseUnavailable

CONNECT_TIMEOUT_SECONDS = 2

# Both counts use small structures: the outbox holds only unpublished work units, and
# runs_leased is a partial index over RUNNING and CANCELLING runs.
GAUGES = Query(
    f"""
    SELECT (SELECT count(*) FROM outbox) AS outbox_backlog,
           (SELECT count(*) FROM runs WHERE state IN {LEASED}
              AND lease_expires_at > clock_timestamp()) AS active_leases
    """
)


@dataclass(frozen=True)
class DatabaseGauges:
    outbox_backlog: int  # work units written but not yet published to RabbitMQ
    active_leases: int  # attempts held by a worker whose lease has not expired


class DatabaseProbe:
    """The ping has a connection of its own: a busy pool must not make a healthy process look
    unhealthy (and have Envoy take it out of rotation under load)."""

    def __init__(self, engine: Database, database_url: str) -> None:
        self._engine = engine
        self._url = libpq_url(database_url)
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._failing = False

    async def ping(self) -> None:
        """Raises DatabaseUnavailable when PostgreSQL cannot be reached."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    application_name=f"{self._engine.application_name}-probe",
                )
            await self._connection.execute("SELECT 1")
        except (psycopg.Error, OSError) as error:
            self._failing = True
            await self.close()
            raise DatabaseUnavailable(f"the database is unavailable: {error}") from error
        if self._failing:  # back after an outage: the pool's idle connections are likely dead
            self._failing = False
            await self._engine.refresh()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()

    async def gauges(self) -> DatabaseGauges:
        async with statement(self._engine) as conn:
            row = (await conn.execute(GAUGES)).one_row()
        return DatabaseGauges(outbox_backlog=int(row.outbox_backlog), active_leases=int(row.active_leases))
