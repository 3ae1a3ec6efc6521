"""API keys: format, hash, expiry, and their check against the credential map (revocation,
unknown keys, the refresh they may cause, last-used notes)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from taskmesh.auth import api_keys
from taskmesh.auth.api_keys import KeyCredential
from taskmesh.auth.credentials import CredentialDirectory, StaticCredentials
from taskmesh.auth.key_usage import KeyUsageRecorder
from taskmesh.auth.tokens import Principal
from taskmesh.records import Credential, CredentialStamp
from taskmesh.service_errors import DatabaseUnavailable, Unauthenticated
from taskmesh.states import Role

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def test_a_key_has_its_format_and_is_stored_as_its_sha256() -> None:
    made = api_keys.new_key()
    assert re.fullmatch(r"tmk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", made.key)
    assert api_keys.key_id_of(made.key) == made.key_id and made.key.startswith(f"tmk_{made.key_id}_")
    assert made.secret_hash == api_keys.hash_key(made.key) and len(made.secret_hash) == 64
    assert made.key not in made.secret_hash and made.key.rsplit("_", 1)[1] not in made.secret_hash
    assert api_keys.new_key().key != made.key  # random
    assert api_keys.display(made.key_id) == f"tmk_{made.key_id}_..."


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tmk_",
        "tmk_0123_abc",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "tmk_0123456789ABCDEF_" + "a" * 43,
        "tmk_0123456789abcdef_" + "a" * 42,
        "tmk_0123456789abcdef_" + "a" * 43 + "\n",
    ],
)
def test_malformed_keys_have_no_id(text: str) -> None:
    assert api_keys.key_id_of(text) is None


def test_a_key_is_told_from_a_jwt() -> None:
    assert api_keys.looks_like_key(api_keys.new_key().key)
    assert not api_keys.looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def test_matching_and_expiry() -> None:
    made = api_keys.new_key()
    credential = KeyCredential(made.key_id, "robot", made.secret_hash, NOW + timedelta(days=1))
    assert api_keys.matches(credential, made.key)
    assert not api_keys.matches(credential, made.key[:-1] + ("x" if made.key[-1] != "x" else "y"))
    assert not api_keys.expired(credential, NOW)
    assert api_keys.expired(credential, NOW + timedelta(days=1))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Keys(StaticCredentials):
    def __init__(self) -> None:
        super().__init__([Credential("robot", Role.OPERATOR, 1), Credential("ann", Role.ADMIN, 2)])
        self.stamps = 0
        self.down = False

    async def credential_stamp(self) -> CredentialStamp:
        self.stamps += 1
        if self.down:
            raise DatabaseUnavailable()
        return await super().credential_stamp()

    def add(self, account: str = "robot", expires: datetime = NOW + timedelta(days=1)) -> str:
        made = api_keys.new_key()
        self.keys.append(KeyCredential(made.key_id, account, made.secret_hash, expires))
        self.key_versions[made.key_id] = 10 + len(self.key_versions)
        return made.key


class Usage:
    def __init__(self) -> None:
        self.used: list[str] = []

    def record(self, key_id: str) -> None:
        self.used.append(key_id)


def _directory(source: Keys, clock: Clock, usage: Usage | None = None) -> CredentialDirectory:
    return CredentialDirectory(source, clock=clock, usage=usage, wall_clock=lambda: NOW, unknown_key_gap=0.0)


async def test_a_key_stands_for_its_account_with_the_accounts_role() -> None:
    source, clock, usage = Keys(), Clock(), Usage()
    key = source.add()
    directory = _directory(source, clock, usage)
    await directory.refresh()
    principal = await directory.check_key(key)
    assert principal == Principal("robot", Role.OPERATOR, api_key_id=api_keys.key_id_of(key) or "")
    assert usage.used == [principal.api_key_id]


async def test_a_revoked_key_an_expired_key_and_a_deleted_accounts_key_are_refused() -> None:
    source, clock = Keys(), Clock()
    revoked, expired, orphan = source.add(), source.add(expires=NOW), source.add(account="gone")
    directory = _directory(source, clock)
    await directory.refresh()
    assert await directory.check_key(revoked)
    source.keys = [k for k in source.keys if k.key_id != api_keys.key_id_of(revoked)]  # the row deleted
    clock.now += 1
    await directory.refresh()  # the key count fell: the stamp changed, the map reloads
    with pytest.raises(Unauthenticated, match="not valid"):
        await directory.check_key(revoked)
    with pytest.raises(Unauthenticated, match="expired"):
        await directory.check_key(expired)
    with pytest.raises(Unauthenticated, match="not valid"):
        await directory.check_key(orphan)


async def test_a_wrong_secret_for_a_known_id_is_refused() -> None:
    source, clock = Keys(), Clock()
    key = source.add()
    directory = _directory(source, clock)
    await directory.refresh()
    with pytest.raises(Unauthenticated):
        await directory.check_key(key[:-2] + "AA" if not key.endswith("AA") else key[:-2] + "BB")


async def test_a_key_made_since_the_last_refresh_is_found_at_once() -> None:
    source, clock = Keys(), Clock()
    directory = _directory(source, clock)
    await directory.refresh()
    key = source.add()  # made on another replica
    clock.now += 0.01
    assert (await directory.check_key(key)).username == "robot"


async def test_unknown_keys_cost_at_most_one_refresh_per_gap() -> None:
    source, clock = Keys(), Clock()
    directory = CredentialDirectory(source, clock=clock, wall_clock=lambda: NOW, unknown_key_gap=0.0)
    await directory.refresh()
    stamps = source.stamps
    clock.now += 0.01
    made_up = [f"tmk_{i:016x}_" + "A" * 43 for i in range(50)]
    results = await asyncio.gather(*(directory.check_key(k) for k in made_up), return_exceptions=True)
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert source.stamps - stamps == 1  # concurrent callers share one refresh


async def test_a_stale_map_refuses_keys_when_the_database_is_away() -> None:
    source, clock = Keys(), Clock()
    key = source.add()
    directory = _directory(source, clock)
    await directory.refresh()
    source.down = True
    clock.now += 10
    with pytest.raises(Exception, match="cannot check"):
        await directory.check_key(key)


class Store:
    def __init__(self) -> None:
        self.writes: list[dict[str, datetime]] = []
        self.down = False

    async def touch_keys(self, used: Mapping[str, datetime]) -> None:
        if self.down:
            raise DatabaseUnavailable()
        self.writes.append(dict(used))


async def test_last_used_times_are_written_in_one_statement_per_interval() -> None:
    store, now = Store(), [NOW]
    recorder = KeyUsageRecorder(store, 10.0, clock=lambda: now[0])
    for i in range(1000):
        now[0] = NOW + timedelta(seconds=i)
        recorder.record("a" if i % 2 else "b")
    await recorder.flush()
    await recorder.flush()  # nothing new: no write
    assert store.writes == [{"a": NOW + timedelta(seconds=999), "b": NOW + timedelta(seconds=998)}]


async def test_a_failed_write_keeps_its_times_for_the_next() -> None:
    store = Store()
    recorder = KeyUsageRecorder(store, 10.0, clock=lambda: NOW)
    recorder.record("a")
    store.down = True
    with pytest.raises(DatabaseUnavailable):
        await recorder.flush()
    store.down = False
    await recorder.flush()
    assert store.writes == [{"a": NOW}]
