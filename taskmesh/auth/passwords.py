"""Password hashing with argon2id, off the event loop.

argon2 takes tens of milliseconds of CPU per hash. PasswordHashing runs it on a few threads of
its own (argon2 releases the GIL), at a lower CPU priority than the rest of the process: a
login flood then queues for those threads instead of starving the event loop that answers
every other call and the health checks. The queue is bounded: a login that finds it full is
answered RESOURCE_EXHAUSTED at once rather than after waiting longer than its client would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from taskmesh.service_errors import ResourceExhausted

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
# Verified against when a username is unknown, so that both cases take the same time (same
# argon2 parameters as every real hash).
_DUMMY_HASH = _hasher.hash("taskmesh-timing-equaliser")
# The hashing threads' nice value (Linux schedules threads, so this leaves the loop alone).
HASHING_NICENESS = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (OSError, AttributeError) as error:  # not Linux, or not allowed: hashing still works
        log.debug("cannot lower the hashing threads' priority: %s", error)


class PasswordHashing:
    def __init__(self, threads: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="argon2", initializer=_lower_priority)
        self._slots = threads + queue
        self._taken = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Room for one login's hashing, or ResourceExhausted if as many are running and waiting
        as allowed."""
        if self._taken >= self._slots:
            raise ResourceExhausted("the server is busy checking passwords; retry in 1 s", retry_after=1)
        self._taken += 1
        try:
            yield
        finally:
            self._taken -= 1

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._executor, hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, verify_password, password_hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
