"""A small layer over psycopg: a connection pool, queries written with :named parameters, rows
with attribute access, and the translation of driver errors into taskmesh errors.

This is not SQLAlchemy. SQLAlchemy describes the schema (taskmesh/db/models.py) and Alembic
evolves it; queries run on psycopg directly. Measured here, SQLAlchemy's asyncio layer costs
about 200 us of CPU per statement on top of psycopg's 80 us: on the hot path (a claim, an
outcome, a relay batch) that was more than the statement itself.
"""

from __future__ import annotations

import logging
import re
import select
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import make_url

from taskmesh.service_errors import AlreadyExists, DatabaseUnavailable

log = logging.getLogger(__name__)

# psycopg_pool retries a lost connection after 1 s, then 2, 4, 8... for reconnect_timeout, so a
# pool could stay empty for many seconds after a short database restart. Give up on a lost
# connection this soon instead, and start over (reconnect_failed below): a connection is tried
# about once a second for as long as the database is down, and found within a second of its
# return. Ten connections knocking once a second do not hurt a recovering server.
RECONNECT_TIMEOUT_SECONDS = 1.5

# A pool grown by a burst gives back the connections it no longer needs after this long.
IDLE_CONNECTION_SECONDS = 60.0

_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Query:
    """SQL with :name parameters (as written in this package), and its psycopg %(name)s form."""

    sql: str
    psycopg_sql: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "psycopg_sql", _NAMED_PARAMETER.sub(r"%(\1)s", self.sql))

    def __str__(self) -> str:
        return self.sql


class Rows:
    """The rows of one statement (attribute access: row.id), in the few shapes callers need;
    rowcount is psycopg's (rows changed by an UPDATE or DELETE)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all_rows(self) -> list[Any]:
        return self._rows

    def first_row(self) -> Any | None:
        """The first row, or None when there is none."""
        return self._rows[0] if self._rows else None

    def one_row(self) -> Any:
        """The only row; LookupError unless there is exactly one."""
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def one_value(self) -> Any:
        """The first column of the only row."""
        return self.one_row()[0]

    def first_column(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Connection:
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    async def execute(self, query: Query, params: Mapping[str, Any] | None = None) -> Rows:
        async with self._connection.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(query.psycopg_sql, params)
            rows = await cursor.fetchall() if cursor.description is not None else []
            return Rows(rows, cursor.rowcount)


def libpq_url(database_url: str) -> str:
    """postgresql+psycopg://... (the SQLAlchemy form used in settings) -> postgresql://..."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def check_if_suspect(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check before lending a connection, without a round trip for a healthy one.

    An idle connection has nothing to read: a server that ended it (a terminated backend, a
    restart) sent its FATAL message and closed the socket, which is then readable. Only then is
    the connection tested with a round trip (psycopg_pool's check, which raises for a dead one,
    so the pool replaces it). A poll of the socket costs a microsecond; the round trip it saves
    cost ~100 us of CPU and a network wait on every statement of the API."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        readable = [True]
    if readable:
        await AsyncConnectionPool.check_connection(conn)


class Database:
    """A pool of autocommit connections, named `application_name` in pg_stat_activity.
    check: test each connection before lending it (check_if_suspect), so that one left dead by
    a database restart is replaced instead of failing a call (right for the API, whose clients
    should not see the restart; the scheduler does without, its callers retry)."""

    def __init__(
        self,
        database_url: str,
        pool_size: int = 10,
        check: bool = True,
        application_name: str = "taskmesh",
        min_size: int | None = None,
    ) -> None:
        """pool_size connections at most; min_size (default: pool_size) kept open when idle, the
        others closed after IDLE_CONNECTION_SECONDS unused."""
        self.application_name = application_name
        self._pool = AsyncConnectionPool(
            libpq_url(database_url),
            min_size=pool_size if min_size is None else min(min_size, pool_size),
            max_size=pool_size,
            max_idle=IDLE_CONNECTION_SECONDS,
            kwargs={"autocommit": True, "application_name": application_name},
            check=check_if_suspect if check else None,
            timeout=10,
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
            reconnect_failed=_reconnect_again,
            open=False,
        )
        self._opened = False

    async def _ensure_open(self) -> None:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Connection]:
        """A connection for one statement (atomic by itself, CTEs included)."""
        await self._ensure_open()
        with translated_errors():
            async with self._pool.connection() as conn:
                yield Connection(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One transaction (BEGIN ... COMMIT) for work that spans several statements."""
        await self._ensure_open()
        with translated_errors():
            async with self._pool.connection() as conn, conn.transaction():
                yield Connection(conn)

    async def refresh(self) -> None:
        """Replace the idle connections a database restart left broken (call it when the
        database is back, so that the next calls need not find them one by one)."""
        if self._opened:
            await self._pool.check()

    async def dispose(self) -> None:
        if self._opened:
            await self._pool.close()


async def _reconnect_again(pool: AsyncConnectionPool[Any]) -> None:
    """psycopg_pool gave up on a lost connection: check() grows the pool back (one connection at
    a time, each tried for RECONNECT_TIMEOUT_SECONDS again) until the database answers."""
    log.debug("pool %s could not reconnect within %.1fs; trying again", pool.name, RECONNECT_TIMEOUT_SECONDS)
    if not pool.closed:
        await pool.check()


@asynccontextmanager
async def statement(database: Database) -> AsyncIterator[Connection]:
    async with database.statement() as conn:
        yield conn


@asynccontextmanager
async def transaction(database: Database) -> AsyncIterator[Connection]:
    async with database.transaction() as conn:
        yield conn


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors -> taskmesh errors."""
    try:
        yield
    except psycopg.errors.UniqueViolation as error:
        constraint = getattr(error.diag, "constraint_name", None) or "a unique constraint"
        raise AlreadyExists(f"already exists ({constraint})") from error
    except (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg.errors.IdleInTransactionSessionTimeout,  # the server ended the session: it is gone
        PoolTimeout,
        OSError,
    ) as error:
        raise DatabaseUnavailable() from error
