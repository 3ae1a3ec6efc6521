"""Secrets as stored: sealed values (taskmesh.secrets.box does the sealing), never plaintext."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from taskmesh.db.pg import Database, Query, statement
from taskmesh.secrets.box import Sealed
from taskmesh.service_errors import AlreadyExists, NotFound

SECRET_COLUMNS = "name, description, key_id, version, create_time, update_time"

INSERT_SECRET = Query(
    "INSERT INTO secrets (name, description, key_id, ciphertext) VALUES (:name, :description, :key_id, :ciphertext) "
    f"RETURNING {SECRET_COLUMNS}"
)
UPDATE_SECRET = Query(
    "UPDATE secrets SET key_id = :key_id, ciphertext = :ciphertext, description = coalesce(:description, description), "
    f"version = version + 1, update_time = now() WHERE name = :name RETURNING {SECRET_COLUMNS}"
)
DELETE_SECRET = Query("DELETE FROM secrets WHERE name = :name")
SELECT_SECRETS = Query(f"SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name")
SELECT_SEALED = Query("SELECT name, key_id, ciphertext FROM secrets WHERE name = ANY(:names)")
SELECT_NOT_UNDER_KEY = Query(
    "SELECT name, key_id, ciphertext, version FROM secrets WHERE key_id <> :key_id ORDER BY name LIMIT :limit"
)
# Guarded by the version read, so that a rotation never overwrites a concurrent update.
RESEAL_SECRET = Query(
    "UPDATE secrets SET key_id = :key_id, ciphertext = :ciphertext WHERE name = :name AND version = :version"
)


@dataclass(frozen=True)
class SecretRecord:
    name: str
    description: str
    key_id: str
    version: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class SealedSecret:
    name: str
    sealed: Sealed
    version: int = 0


class SecretRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(self, name: str, description: str, sealed: Sealed) -> SecretRecord:
        params = {
            "name": name,
            "description": description,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
        }
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_SECRET, params)).one_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"secret {name!r} already exists") from error
        return SecretRecord(**row._asdict())

    async def update(self, name: str, description: str | None, sealed: Sealed) -> SecretRecord:
        params = {
            "name": name,
            "description": description,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
        }
        async with statement(self._engine) as conn:
            row = (await conn.execute(UPDATE_SECRET, params)).first_row()
        if row is None:
            raise NotFound(f"secret {name!r} not found")
        return SecretRecord(**row._asdict())

    async def delete(self, name: str) -> None:
        async with statement(self._engine) as conn:
            result = await conn.execute(DELETE_SECRET, {"name": name})
        if not result.rowcount:
            raise NotFound(f"secret {name!r} not found")

    async def all(self) -> list[SecretRecord]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_SECRETS)).all_rows()
        return [SecretRecord(**row._asdict()) for row in rows]

    async def sealed(self, names: Sequence[str]) -> list[SealedSecret]:
        """The sealed values of those names that exist."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_SEALED, {"names": list(names)})).all_rows()
        return [SealedSecret(r.name, Sealed(r.key_id, bytes(r.ciphertext))) for r in rows]

    async def not_under_key(self, key_id: str, limit: int) -> list[SealedSecret]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_NOT_UNDER_KEY, {"key_id": key_id, "limit": limit})).all_rows()
        return [SealedSecret(r.name, Sealed(r.key_id, bytes(r.ciphertext)), r.version) for r in rows]

    async def reseal(self, secret: SealedSecret, sealed: Sealed) -> bool:
        params = {
            "name": secret.name,
            "version": secret.version,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
        }
        async with statement(self._engine) as conn:
            result = await conn.execute(RESEAL_SECRET, params)
        return bool(result.rowcount)
