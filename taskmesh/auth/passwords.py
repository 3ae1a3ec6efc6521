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

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from taskmesh.service_errors import ResourceExhausted

log = logging.getLogger(__name__)

# argon2-cffi's defaults (RFC 9106 low-memory profile); production refuses less
# (taskmesh.settings check_secure). A stored hash carries its own parameters, so a change of
# cost applies to new hashes and every stored one still verifies.
DEFAULT_TIME_COST = argon2.DEFAULT_TIME_COST
DEFAULT_MEMORY_KIB = argon2.DEFAULT_MEMORY_COST
_DUMMY_PASSWORD = "taskmesh-timing-equaliser"
# The hashing threads' nice value (Linux schedules threads, so this leaves the loop alone).
HASHING_NICENESS = 10


def hasher(time_cost: int = DEFAULT_TIME_COST, memory_kib: int = DEFAULT_MEMORY_KIB) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


_default = hasher()


def hash_password(password: str, with_hasher: PasswordHasher = _default) -> str:
    return with_hasher.hash(password)


def verify_password(
    password_hash: str | None, password: str, with_hasher: PasswordHasher = _default, dummy: str | None = None
) -> bool:
    """`dummy`: a hash of the same parameters, verified against when the user is unknown, so
    that both cases take the same time (made here if not given)."""
    try:
        checked = password_hash or dummy or with_hasher.hash(_DUMMY_PASSWORD)
        return with_hasher.verify(checked, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (OSError, AttributeError) as error:  # not Linux, or not allowed: hashing still works
        log.debug("cannot lower the hashing threads' priority: %s", error)


class PasswordHashing:
    def __init__(
        self, threads: int, queue: int, time_cost: int = DEFAULT_TIME_COST, memory_kib: int = DEFAULT_MEMORY_KIB
    ) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="argon2", initializer=_lower_priority)
        self._slots = threads + queue
        self._taken = 0
        self._hasher = hasher(time_cost, memory_kib)
        # Made on a hashing thread, not in the start-up path; the first unknown-user login waits for it.
        self._dummy = self._executor.submit(self._hasher.hash, _DUMMY_PASSWORD)

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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, hash_password, password, self._hasher)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        dummy: str | None = None
        if not password_hash:
            dummy = await asyncio.wrap_future(self._dummy)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, verify_password, password_hash, password, self._hasher, dummy
        )

    def parameters_hash(self) -> str:
        """A hash of this hashing's parameters (for tests)."""
        return self._dummy.result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
