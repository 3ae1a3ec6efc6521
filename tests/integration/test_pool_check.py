"""The API pool's check before lending a connection (taskmesh.db.pg.check_if_suspect): no round
trip for a healthy connection, and a connection whose backend the server ended is replaced
without failing the call, against the real PostgreSQL."""

import select
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from taskmesh.db.pg import Database, Query
from tests.support import PG_ADMIN_URL, Isolation, eventually, wait_for

pytestmark = pytest.mark.integration

SELECT_ONE = Query("SELECT 1")


@pytest.fixture
def round_trip_checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each psycopg_pool round-trip check made (the pool's check calls it for suspects only)."""
    checked: list[object] = []
    original = AsyncConnectionPool.check_connection

    async def counted(conn: Any) -> None:
        checked.append(conn)
        await original(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))
    return checked


@pytest.fixture
def opened_connections(monkeypatch: pytest.MonkeyPatch) -> list[psycopg.AsyncConnection[Any]]:
    """Every connection psycopg_pool opens (it opens them with AsyncConnection.connect)."""
    opened: list[psycopg.AsyncConnection[Any]] = []
    connect = psycopg.AsyncConnection.connect

    async def recorded(cls: type[psycopg.AsyncConnection[Any]], *args: Any, **kwargs: Any) -> Any:
        conn = await connect.__func__(cls, *args, **kwargs)  # type: ignore[attr-defined]
        opened.append(conn)
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(recorded))
    return opened


def _told_it_ended(conn: psycopg.AsyncConnection[Any]) -> bool:
    """The server's goodbye (FATAL, then end of stream) has reached this client's socket."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


@pytest.fixture
async def api_engine(integration_isolation: Isolation) -> AsyncIterator[Database]:
    engine = Database(integration_isolation.database_url, pool_size=2, application_name="pool-check-test")
    yield engine
    await engine.dispose()


async def _select_one(engine: Database) -> int:
    async with engine.statement() as conn:
        value: int = (await conn.execute(SELECT_ONE)).one_value()
        return value


async def test_a_healthy_connection_is_lent_without_a_round_trip(
    api_engine: Database, round_trip_checks: list[object]
) -> None:
    for _ in range(20):
        assert await _select_one(api_engine) == 1
    assert round_trip_checks == []


async def test_a_connection_whose_backend_was_terminated_is_replaced_without_failing_the_call(
    api_engine: Database,
    integration_isolation: Isolation,
    round_trip_checks: list[object],
    opened_connections: list[psycopg.AsyncConnection[Any]],
) -> None:
    assert await _select_one(api_engine) == 1
    await eventually(lambda: len(opened_connections) == 2, message="the pool to open both its connections")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
            " AND application_name = 'pool-check-test'",
            (integration_isolation.database,),
        ).fetchone()
        assert ended is not None and ended[0] == 2

        def gone() -> bool:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'pool-check-test'",
                (integration_isolation.database,),
            ).fetchone()
            return row is not None and row[0] == 0

        wait_for(gone, message="the terminated backends to end")
    # A backend's end leaves pg_stat_activity after it sent its goodbye, but on a busy machine
    # the bytes can reach the client's socket a little later: the check can only see what came.
    await eventually(
        lambda: all(_told_it_ended(conn) for conn in opened_connections), message="the clients to be told"
    )
    for _ in range(4):  # every connection of the pool was ended: each is found and replaced
        assert await _select_one(api_engine) == 1
    assert len(round_trip_checks) >= 1
