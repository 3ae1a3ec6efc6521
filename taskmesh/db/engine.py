"""The async engine and the translation of driver errors into taskmesh errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from taskmesh.errors import AlreadyExists, DatabaseUnavailable


def make_engine(database_url: str, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """pre_ping: replace a connection left dead by a database restart before use, instead of
    failing one call with DatabaseUnavailable (after which SQLAlchemy recycles the whole pool).
    It costs a round trip per checkout: right for the API, whose clients should not see the
    restart; the scheduler does without, since its callers retry anyway."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )


def is_unique_violation(error: exc.IntegrityError) -> bool:
    return isinstance(error.orig, psycopg.errors.UniqueViolation)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction (BEGIN ... COMMIT) for work that spans several statements."""
    with translated_errors():
        async with engine.begin() as conn:
            yield conn


@asynccontextmanager
async def statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit mode, for one statement (atomic by itself, CTEs included):
    one round trip instead of three."""
    with translated_errors():
        async with engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors -> taskmesh errors."""
    try:
        yield
    except exc.IntegrityError as error:
        if is_unique_violation(error):
            raise AlreadyExists(_constraint_message(error)) from error
        raise
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise DatabaseUnavailable() from error
    except exc.DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable() from error
        raise
    except OSError as error:
        raise DatabaseUnavailable() from error


def _constraint_message(error: exc.IntegrityError) -> str:
    diag = getattr(error.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or "a unique constraint"
    return f"already exists ({constraint})"
