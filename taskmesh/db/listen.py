"""LISTEN for PostgreSQL notifications and turn them into an asyncio.Event.

Notifications only wake pollers early: a lost notification (or a lost connection) delays work
by at most one poll interval, it never loses any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from taskmesh.db.engine import libpq_url

log = logging.getLogger(__name__)


async def listen_forever(database_url: str, channel: str, on_notify: Callable[[str], None]) -> None:
    """Call on_notify(payload) for every notification on `channel`, and on_notify("") whenever
    (re)connected, since notifications sent meanwhile are lost. Reconnects with backoff."""
    delay = 0.5
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True)
            async with conn:
                await conn.execute(f'LISTEN "{channel}"')
                delay = 0.5
                on_notify("")
                async for notification in conn.notifies():
                    on_notify(notification.payload)
        except asyncio.CancelledError:
            raise
        except (psycopg.Error, OSError) as error:
            log.warning("LISTEN %s failed (%s); retrying in %.1fs", channel, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
