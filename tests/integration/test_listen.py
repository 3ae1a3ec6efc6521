"""taskmesh.db.listen against the real PostgreSQL: notifications reach their channel's handler
as they arrive, every handler hears "" on each (re)connection, a handler that raises does not
end the LISTEN, and a connection the server ended is replaced."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from taskmesh.db.listen import listen_forever
from tests.support import PG_ADMIN_URL, Isolation, eventually

pytestmark = pytest.mark.integration

APPLICATION = "listen-test"


class Heard:
    def __init__(self) -> None:
        self.wakes: list[str] = []
        self.cancels: list[str] = []

    def broken(self, payload: str) -> None:
        raise RuntimeError(f"handler bug on {payload!r}")


@pytest.fixture
async def heard(integration_isolation: Isolation) -> AsyncIterator[Heard]:
    heard = Heard()
    handlers = {"tm_wake": heard.wakes.append, "tm_cancel": heard.cancels.append, "tm_broken": heard.broken}
    task = asyncio.create_task(listen_forever(integration_isolation.database_url, handlers, APPLICATION))
    yield heard
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _notify(isolation: Isolation, *pairs: tuple[str, str]) -> None:
    """Send every (channel, payload) in one transaction: they arrive together."""
    with psycopg.connect(isolation.libpq_url) as conn:
        for channel, payload in pairs:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


async def test_notifications_reach_their_handlers_and_a_raising_handler_ends_nothing(
    heard: Heard, integration_isolation: Isolation
) -> None:
    await eventually(lambda: heard.wakes == [""] and heard.cancels == [""], message="the connected wake-up")
    _notify(integration_isolation, ("tm_broken", "x"), ("tm_cancel", "r1:1:w1"), ("tm_cancel", "r2:1:w1"))
    await eventually(lambda: heard.cancels == ["", "r1:1:w1", "r2:1:w1"], message="both cancels")
    _notify(integration_isolation, ("tm_wake", "later"))
    await eventually(lambda: heard.wakes == ["", "later"], message="a later notification")


async def test_a_connection_the_server_ended_is_replaced_and_wakes_every_handler(
    heard: Heard, integration_isolation: Isolation
) -> None:
    await eventually(lambda: heard.wakes == [""], message="the connected wake-up")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            (integration_isolation.database, APPLICATION),
        ).fetchone()
    assert ended == (1,)
    await eventually(lambda: heard.wakes == ["", ""] and heard.cancels == ["", ""], message="the reconnection")
    _notify(integration_isolation, ("tm_cancel", "r3:2:w2"))
    await eventually(lambda: heard.cancels[-1:] == ["r3:2:w2"], message="a notification after reconnecting")
