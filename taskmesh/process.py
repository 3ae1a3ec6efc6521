"""Running a process: asyncio main (on uvloop, a faster event loop) with SIGTERM/SIGINT turned
into a graceful stop."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable

import uvloop


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]], fast_loop: bool = True) -> None:
    """Run main(stop); stop is set on SIGTERM or SIGINT and main is expected to wind down.

    fast_loop: run on uvloop. The worker does not: children it spawned under uvloop (libuv's
    fork in a process where gRPC's threads run) were seen to die of SIGSEGV before exec."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    quiet_garbage_collector()
    if fast_loop:
        uvloop.run(runner())
    else:
        asyncio.run(runner())


# Objects allocated before the young generation is collected (CPython's default: 700). A run
# allocates a few hundred objects per process; at the default, collections (and the full ones
# that walk every module's objects) were a tenth of the api_server's CPU per call.
YOUNG_GENERATION_THRESHOLD = 50_000


def quiet_garbage_collector() -> None:
    """Collect less often, and never again walk what the imports made (it lives as long as the
    process): gc.freeze() moves it out of the collected generations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
