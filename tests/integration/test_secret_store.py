"""Secrets in PostgreSQL (taskmesh.db.secrets through api_server.secrets): sealed, never in
plaintext; rotation re-seals under the current key and never overwrites a concurrent update."""

from __future__ import annotations

import base64

import pytest

from api_server.secrets import Secrets
from taskmesh.audit import AuditContext
from taskmesh.db.pg import Database, Query, statement
from taskmesh.db.secrets import SecretRepository
from taskmesh.ids import new_id
from taskmesh.secrets.box import SecretBox
from taskmesh.service_errors import AlreadyExists, FailedPrecondition, NotFound


def keyring(*ids: str) -> SecretBox:
    return SecretBox.from_setting(
        ",".join(f"{i}:{base64.urlsafe_b64encode(i.encode() * 32)[:43].decode()}" for i in ids)
    )


def audit() -> AuditContext:
    return AuditContext.system("tests")


def unique(prefix: str) -> str:
    return f"{prefix}_{new_id().replace('-', '')[-12:]}"


async def stored_bytes(engine: Database) -> bytes:
    async with statement(engine) as conn:
        rows = (await conn.execute(Query("SELECT name, description, key_id, ciphertext FROM secrets"))).all_rows()
    return b"".join(
        r.name.encode() + r.description.encode() + r.key_id.encode() + bytes(r.ciphertext) for r in rows
    )


async def test_values_are_stored_sealed(engine: Database) -> None:
    box = keyring("k1")
    secrets = Secrets(SecretRepository(engine), box)
    name = unique("API_TOKEN")
    created = await secrets.create(name, "plaintext-value-1", "for the API", audit())
    assert (created.version, created.key_id) == (1, "k1")
    assert b"plaintext-value-1" not in await stored_bytes(engine)
    with pytest.raises(AlreadyExists):
        await secrets.create(name, "again", "", audit())
    updated = await secrets.update(name, "plaintext-value-2", None, audit())
    assert (updated.version, updated.description) == (2, "for the API")
    [sealed] = await SecretRepository(engine).sealed([name, "NOT_THERE"])
    assert box.open(name, sealed.sealed) == "plaintext-value-2"
    await secrets.delete(name, audit())
    with pytest.raises(NotFound):
        await secrets.delete(name, audit())


async def test_rotation_reseals_under_the_current_key(engine: Database) -> None:
    names = [unique("ROTATED") for _ in range(3)]
    old = Secrets(SecretRepository(engine), keyring("old"))
    for index, name in enumerate(names):
        await old.create(name, f"value-{index}", "", audit())
    rotated, key_id = await Secrets(SecretRepository(engine), keyring("new", "old")).rotate(audit())
    assert rotated >= 3 and key_id == "new"
    new_only = keyring("new")
    for sealed in await SecretRepository(engine).sealed(names):
        assert sealed.sealed.key_id == "new"
        assert new_only.open(sealed.name, sealed.sealed) == f"value-{names.index(sealed.name)}"


async def test_rotation_never_overwrites_a_concurrent_update(engine: Database) -> None:
    repository = SecretRepository(engine)
    name = unique("RACED")
    await Secrets(repository, keyring("old")).create(name, "first", "", audit())
    [stale] = [s for s in await repository.not_under_key("new", 10_000) if s.name == name]
    await Secrets(repository, keyring("new", "old")).update(name, "second", None, audit())  # version 2
    assert not await repository.reseal(stale, keyring("new", "old").seal(name, "first"), audit())
    [current] = await repository.sealed([name])
    assert keyring("new").open(name, current.sealed) == "second"


async def test_rotation_without_the_old_key_names_it(engine: Database) -> None:
    name = unique("ORPHAN")
    await Secrets(SecretRepository(engine), keyring("gone")).create(name, "value", "", audit())
    with pytest.raises(FailedPrecondition, match="'gone'"):
        await Secrets(SecretRepository(engine), keyring("new")).rotate(audit())
    async with statement(engine) as conn:
        await conn.execute(Query("DELETE FROM secrets WHERE key_id = 'gone'"))


async def test_secrets_off(engine: Database) -> None:
    with pytest.raises(FailedPrecondition, match="TASKMESH_SECRET_KEYS"):
        await Secrets(SecretRepository(engine), None).create(unique("OFF"), "value", "", audit())
