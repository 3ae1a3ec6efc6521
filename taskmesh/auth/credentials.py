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

The map holds the service accounts' API keys too (taskmesh.auth.api_keys), by key id: a key
passes if its hash matches, it has not expired and its account still exists; the caller is
the account with its current role. Revoking a key deletes its row, which changes the stamp (a
key count), so every server drops it at its next refresh. A key id the map does not know (made
since the last refresh, maybe on another replica) makes the caller refresh, at most once per
`unknown_key_gap` seconds whatever the number of callers (a flood of made-up keys costs a few
cheap queries a second and waits for them). Each accepted key is noted in `usage` (its
last-used time, written in batches).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from taskmesh.auth import api_keys
from taskmesh.auth.api_keys import KeyCredential
from taskmesh.auth.tokens import Principal, TokenClaims
from taskmesh.records import Credential, CredentialStamp
from taskmesh.service_errors import TaskmeshError, Unauthenticated, Unavailable

log = logging.getLogger(__name__)


class CredentialSource(Protocol):
    """taskmesh.db.users.UserRepository, or StaticCredentials in unit tests."""

    async def credential_stamp(self) -> CredentialStamp: ...

    async def credentials(self) -> list[Credential]: ...

    async def api_keys(self) -> list[KeyCredential]: ...


class KeyUsage(Protocol):
    """taskmesh.auth.key_usage.KeyUsageRecorder: notes that a key was used, cheaply."""

    def record(self, key_id: str) -> None: ...


class StaticCredentials:
    """A fixed set of credentials (unit tests)."""

    def __init__(self, credentials: Iterable[Credential], keys: Iterable[KeyCredential] = ()) -> None:
        self.items = list(credentials)
        self.keys = list(keys)
        self.key_versions: dict[str, int] = {}

    async def credential_stamp(self) -> CredentialStamp:
        top = max([c.version for c in self.items] + list(self.key_versions.values()), default=0)
        return CredentialStamp(top_version=top, users=len(self.items), keys=len(self.keys))

    async def credentials(self) -> list[Credential]:
        return list(self.items)

    async def api_keys(self) -> list[KeyCredential]:
        return list(self.keys)


UNKNOWN_KEY_GAP = 0.1


class CredentialDirectory:
    def __init__(
        self,
        source: CredentialSource,
        refresh_interval: float = 1.0,
        max_staleness: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        usage: KeyUsage | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        unknown_key_gap: float = UNKNOWN_KEY_GAP,
    ) -> None:
        self._source = source
        self._usage = usage
        self._wall_clock = wall_clock
        self._unknown_key_gap = unknown_key_gap
        self._keys: dict[str, KeyCredential] = {}
        self._started_at = float("-inf")
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

    async def check_key(self, key: str) -> Principal:
        """The service account an API key stands for, with its current role."""
        if self._clock() - self._fresh_as_of > self._max_staleness:
            await self._refresh_or_unavailable()
        key_id = api_keys.key_id_of(key)
        if key_id is None:
            raise Unauthenticated("the API key is malformed")
        credential = self._keys.get(key_id)
        if credential is None:
            await self._refresh_for_unknown_key()
            credential = self._keys.get(key_id)
        if credential is None or not api_keys.matches(credential, key):
            raise Unauthenticated("the API key is not valid (unknown, revoked or its account deleted)")
        if api_keys.expired(credential, self._wall_clock()):
            raise Unauthenticated("the API key has expired; create a new one")
        account = self._by_user.get(credential.service_account)
        if account is None:
            raise Unauthenticated("the API key is not valid (unknown, revoked or its account deleted)")
        if self._usage is not None:
            self._usage.record(key_id)
        return Principal(username=account.username, role=account.role, api_key_id=key_id)

    async def _refresh_for_unknown_key(self) -> None:
        asked_at = self._clock()
        wait = self._started_at + self._unknown_key_gap - asked_at
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await self.refresh(asked_at)
        except TaskmeshError as error:
            raise Unavailable("cannot check the API key against the keys right now; try again") from error

    def _held(self, claims: TokenClaims) -> Principal:
        credential = self._by_user.get(claims.principal.username)
        if credential is None or credential.version != claims.version or credential.role != claims.principal.role:
            raise Unauthenticated("the access token was revoked (its user was changed or deleted); log in again")
        return claims.principal

    async def refresh(self, asked_at: float | None = None) -> None:
        """Bring the map up to date; concurrent callers share one refresh that started after they
        asked (at `asked_at`, by default now)."""
        asked_at = self._clock() if asked_at is None else asked_at
        async with self._lock:
            if self._fresh_as_of >= asked_at:
                return
            started_at = self._started_at = self._clock()
            stamp = await self._source.credential_stamp()
            if stamp != self._stamp:
                self._by_user = {c.username: c for c in await self._source.credentials()}
                self._keys = {k.key_id: k for k in await self._source.api_keys()}
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
