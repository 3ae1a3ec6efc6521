"""Last-used times of API keys, without a write per call.

Each accepted key is noted in memory (a dict assignment); every `interval` seconds the keys
used since the last write are written in one statement (taskmesh.db.service_accounts'
touch_keys), which never moves a time backwards, so replicas may write in any order. A write
that fails keeps its times for the next one. A key's last-used time is thus up to about
`interval` seconds late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from taskmesh.service_errors import TaskmeshError

log = logging.getLogger(__name__)


class KeyTouchStore(Protocol):
    async def touch_keys(self, used: Mapping[str, datetime]) -> None: ...


class KeyUsageRecorder:
    def __init__(
        self,
        store: KeyTouchStore,
        interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._interval = interval
        self._clock = clock
        self._used: dict[str, datetime] = {}

    def record(self, key_id: str) -> None:
        self._used[key_id] = self._clock()

    async def flush(self) -> None:
        if not self._used:
            return
        used, self._used = self._used, {}
        try:
            await self._store.touch_keys(used)
        except TaskmeshError:
            for key_id, when in used.items():  # keep them, unless a newer use came meanwhile
                self._used.setdefault(key_id, when)
            raise

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except TaskmeshError as error:
                log.warning("cannot write API keys' last-used times: %s", error.message)
