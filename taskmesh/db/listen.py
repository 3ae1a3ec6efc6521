"""LISTEN for PostgreSQL notifications and hand their payloads to callbacks.

Notifications only wake pollers early: a lost notification (or a lost connection) delays work
by at most one poll interval, it never loses any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import psycopg

from taskmesh.db.pg import libpq_url
from taskmesh.reconnect import Reconnect

log = logging.getLogger(__name__)


async def listen_forever(
    database_url: str, handlers: Mapping[str, Callable[[str], None]], application_name: str = "taskmesh-listen"
) -> None:
    """On one connection, call handlers[channel](payload) for every notification on each
    channel, and every handler with "" whenever (re)connected, since notifications sent
    meanwhile are lost. Reconnects with backoff."""
    reconnect = Reconnect(f"LISTEN {', '.join(handlers)}", logger=log)
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                libpq_url(database_url), autocommit=True, application_name=application_name
            )
            async with conn:
                for channel in handlers:
                    await conn.execute(f'LISTEN "{channel}"')
                reconnect.connected()
                for on_notify in handlers.values():
                    on_notify("")
                async for notification in conn.notifies():
                    handler = handlers.get(notification.channel)
                    if handler is not None:
                        handler(notification.payload)
        except (psycopg.Error, OSError) as error:
            await reconnect.failed(error)
