"""Is a token's user still what the token says?

Every server keeps a map of username -> (role, credential version) in memory, refreshed from
PostgreSQL in the background every `refresh_interval` seconds: one cheap query (the highest
version and the number of users) tells whether anything changed, and only then is the map
reloaded. Checking a call is then a dictionary lookup, with no query on the hot path.

A token passes only if its user exists with the token's role and credential version; deleting
a user or changing its role or password (a new version) revokes its tokens within about a
refresh interval on every server. A token newer than the map (issued since its last refresh,
maybe by another replica) makes the caller refresh at once. If the map cannot be refreshed for
`max_staleness` seconds, tokens are refused (UNAVAILABLE) rather than trusted blindly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from taskmesh.auth.tokens import Principal, TokenClaims
from taskmesh.records import Credential, CredentialStamp
from taskmesh.service_errors import TaskmeshError, Unauthenticated, Unavailable

log = logging.getLogger(__name__)


class CredentialSource(Protocol):
    """taskmesh.db.users.UserRepository, or StaticCredentials in unit tests."""

    async def credential_stamp(self) -> CredentialStamp: ...

    async def credentials(self) -> list[Credential]: ...


class StaticCredentials:
    """A fixed set of credentials (unit tests)."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self.items = list(credentials)

    async def credential_stamp(self) -> CredentialStamp:
        return CredentialStamp(top_version=max((c.version for c in self.items), default=0), users=len(self.items))

    async def credentials(self) -> list[Credential]:
        return list(self.items)


class CredentialDirectory:
    def __init__(
        self,
        source: CredentialSource,
        refresh_interval: float = 1.0,
        max_staleness: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._interval = refresh_interval
        self._max_staleness = max_staleness
        self._clock = clock
        self._by_user: dict[str, Credential] = {}
        self._stamp: CredentialStamp | None = None
        # When the last completed refresh started (its view is at least that recent).
        self._fresh_as_of = float("-inf")
        self._lock = asyncio.Lock()

    async def check(self, claims: TokenClaims) -> Principal:
        """The token's principal if its user still holds that role and version."""
        if self._clock() - self._fresh_as_of > self._max_staleness:
            await self._refresh_or_unavailable()
        if self._stamp is not None and claims.version > self._stamp.top_version:
            await self._refresh_or_unavailable()  # issued since the map was loaded
        return self._held(claims)

    def check_now(self, claims: TokenClaims) -> Principal:
        """check() for another thread (the metrics listener's): against the map as it is, never
        refreshing it; a map older than max_staleness refuses every token."""
        if self._clock() - self._fresh_as_of > self._max_staleness:
            raise Unauthenticated("cannot check the access token against the users right now; try again")
        if self._stamp is not None and claims.version > self._stamp.top_version:
            # Issued since the map's last refresh, which the event loop makes within a second:
            # nothing can have revoked it that the map could know of.
            return claims.principal
        return self._held(claims)

    def _held(self, claims: TokenClaims) -> Principal:
        credential = self._by_user.get(claims.principal.username)
        if credential is None or credential.version != claims.version or credential.role != claims.principal.role:
            raise Unauthenticated("the access token was revoked (its user was changed or deleted); log in again")
        return claims.principal

    async def refresh(self) -> None:
        """Bring the map up to date; concurrent callers share one refresh that started after they asked."""
        asked_at = self._clock()
        async with self._lock:
            if self._fresh_as_of >= asked_at:
                return
            started_at = self._clock()
            stamp = await self._source.credential_stamp()
            if stamp != self._stamp:
                self._by_user = {c.username: c for c in await self._source.credentials()}
                self._stamp = stamp
            self._fresh_as_of = started_at

    async def run_forever(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
                failing = False
            except TaskmeshError as error:
                if not failing:
                    log.warning("cannot refresh the credential map: %s", error.message)
                failing = True
            await asyncio.sleep(self._interval)

    async def _refresh_or_unavailable(self) -> None:
        try:
            await self.refresh()
        except TaskmeshError as error:
            raise Unavailable("cannot check the access token against the users right now; try again") from error
