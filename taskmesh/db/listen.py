"""LISTEN for PostgreSQL notifications and hand their payloads to callbacks.

Notifications only wake pollers early: a lost notification (or a lost connection) delays work
by at most one poll interval, it never loses any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from taskmesh.db.pg import libpq_url
from taskmesh.reconnect import Reconnect

log = logging.getLogger(__name__)

Handlers = Mapping[str, Callable[[str], None]]


async def listen_forever(database_url: str, handlers: Handlers, application_name: str = "taskmesh-listen") -> None:
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
                # Those that arrive while a statement runs (the LISTENs) come through psycopg.
                conn.add_notify_handler(lambda notify: _dispatch(handlers, notify.channel, notify.payload))
                for channel in handlers:
                    await conn.execute(f'LISTEN "{channel}"')
                reconnect.connected()
                for channel in handlers:
                    _dispatch(handlers, channel, "")
                await _read_until_lost(conn, handlers)
        except (psycopg.Error, OSError) as error:
            await reconnect.failed(error)


async def _read_until_lost(conn: psycopg.AsyncConnection[Any], handlers: Handlers) -> None:
    """Hand over notifications as their bytes arrive, from a reader callback on the socket;
    raises when the connection is lost. (psycopg's notifies() wakes up ten times a second to
    look for them, which was most of what an idle scheduler did.)"""
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[None] = loop.create_future()
    pgconn, encoding = conn.pgconn, conn.info.encoding

    def readable() -> None:
        try:
            pgconn.consume_input()  # raises when the server closed the connection
        except psycopg.OperationalError as error:
            if not lost.done():
                lost.set_exception(error)
            return
        while notify := pgconn.notifies():
            _dispatch(handlers, notify.relname.decode(encoding), notify.extra.decode(encoding))

    fd = conn.fileno()
    loop.add_reader(fd, readable)
    try:
        await lost
    finally:
        loop.remove_reader(fd)


def _dispatch(handlers: Handlers, channel: str, payload: str) -> None:
    handler = handlers.get(channel)
    if handler is None:
        return
    try:
        handler(payload)
    except Exception:  # a handler's bug must not end the LISTEN
        log.exception("notification handler for %s failed", channel)
