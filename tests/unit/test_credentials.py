"""The credential map behind the guard: tokens of changed or deleted users stop passing."""

from __future__ import annotations

import pytest

from taskmesh.auth.credentials import CredentialDirectory, StaticCredentials
from taskmesh.auth.tokens import Principal, TokenClaims
from taskmesh.records import Credential, CredentialStamp
from taskmesh.service_errors import DatabaseUnavailable, Unauthenticated, Unavailable
from taskmesh.states import Role


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingSource(StaticCredentials):
    def __init__(self, credentials: list[Credential]) -> None:
        super().__init__(credentials)
        self.loads = 0
        self.down = False

    async def credential_stamp(self) -> CredentialStamp:
        if self.down:
            raise DatabaseUnavailable()
        return await super().credential_stamp()

    async def credentials(self) -> list[Credential]:
        self.loads += 1
        return await super().credentials()


def _claims(username: str, role: Role, version: int) -> TokenClaims:
    return TokenClaims(Principal(username, role), version, expires_at=0.0)


@pytest.fixture
def source() -> CountingSource:
    return CountingSource([Credential("ann", Role.ADMIN, 3), Credential("bob", Role.VIEWER, 4)])


async def test_a_current_token_passes_without_reloading(source: CountingSource) -> None:
    clock = Clock()
    directory = CredentialDirectory(source, clock=clock)
    await directory.refresh()
    for _ in range(3):
        assert await directory.check(_claims("ann", Role.ADMIN, 3)) == Principal("ann", Role.ADMIN)
    clock.now += 0.5
    await directory.refresh()  # nothing changed: the stamp says so, no reload
    assert source.loads == 1


@pytest.mark.parametrize(
    "claims",
    [
        _claims("ann", Role.ADMIN, 2),  # issued before a role or password change
        _claims("bob", Role.ADMIN, 4),  # a role the user no longer has
        _claims("carl", Role.ADMIN, 1),  # a deleted user
    ],
)
async def test_stale_tokens_are_revoked(source: CountingSource, claims: TokenClaims) -> None:
    directory = CredentialDirectory(source, clock=Clock())
    await directory.refresh()
    with pytest.raises(Unauthenticated, match="revoked"):
        await directory.check(claims)


async def test_a_change_is_seen_at_the_next_refresh(source: CountingSource) -> None:
    clock = Clock()
    directory = CredentialDirectory(source, clock=clock)
    await directory.refresh()
    source.items = [Credential("ann", Role.ADMIN, 3)]  # bob deleted
    clock.now += 1
    await directory.refresh()
    with pytest.raises(Unauthenticated):
        await directory.check(_claims("bob", Role.VIEWER, 4))


async def test_a_token_newer_than_the_map_refreshes_it_at_once(source: CountingSource) -> None:
    clock = Clock()
    directory = CredentialDirectory(source, clock=clock)
    await directory.refresh()
    source.items = [*source.items, Credential("dora", Role.OPERATOR, 9)]  # created on another replica
    clock.now += 0.1
    assert await directory.check(_claims("dora", Role.OPERATOR, 9)) == Principal("dora", Role.OPERATOR)


async def test_tokens_are_refused_when_the_users_cannot_be_read_for_too_long(source: CountingSource) -> None:
    clock = Clock()
    directory = CredentialDirectory(source, max_staleness=5, clock=clock)
    await directory.refresh()
    source.down = True
    clock.now += 4
    assert await directory.check(_claims("ann", Role.ADMIN, 3))  # within the staleness allowed
    clock.now += 2
    with pytest.raises(Unavailable):
        await directory.check(_claims("ann", Role.ADMIN, 3))
