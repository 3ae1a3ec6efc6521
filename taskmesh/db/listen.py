"""LISTEN for PostgreSQL notifications and turn them into an asyncio.Event.

Notifications only wake pollers early: a lost notification (or a lost connection) delays work
by at most one poll interval, it never loses any.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy import make_url

log = logging.getLogger(__name__)


def libpq_url(database_url: str) -> str:
    """postgresql+psycopg://... (SQLAlchemy) -> postgresql://... (libpq)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_forever(database_url: str, channel: str, wake: asyncio.Event) -> None:
    """Set `wake` on every notification on `channel`; reconnect with backoff on failure."""
    delay = 0.5
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True)
            async with conn:
                await conn.execute(f'LISTEN "{channel}"')
                delay = 0.5
                wake.set()  # anything inserted while we were not listening
                async for _ in conn.notifies():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except (psycopg.Error, OSError) as error:
            log.warning("LISTEN %s failed (%s); retrying in %.1fs", channel, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
