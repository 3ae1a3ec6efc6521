"""Secrets as stored: sealed values (taskmesh.secrets.box does the sealing), never plaintext.

Each change writes its audit row in its own statement (taskmesh.db.audit.audited): the row exists
if and only if the change committed. A rotation is many statements; its one row rides on the
first re-seal that changed something (a rotation that changed nothing leaves the row to the
guard, as every call that changed nothing does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from taskmesh.audit import AuditContext
from taskmesh.db.audit import audited
from taskmesh.db.pg import Database, Query, statement
from taskmesh.secrets.box import Sealed
from taskmesh.service_errors import AlreadyExists, NotFound

SECRET_COLUMNS = "name, description, key_id, version, create_time, update_time"
SECRET_RESOURCE = "'secrets/' || changed.name"
# Which key now seals it and its version: never the value, sealed or not.
SECRET_DETAIL = "jsonb_build_object('key_id', changed.key_id, 'version', changed.version)"

INSERT_SECRET = audited(
    "INSERT INTO secrets (name, description, key_id, ciphertext) VALUES (:name, :description, :key_id, :ciphertext) "
    f"RETURNING {SECRET_COLUMNS}",
    SECRET_RESOURCE,
    SECRET_DETAIL,
)
UPDATE_SECRET = audited(
    "UPDATE secrets SET key_id = :key_id, ciphertext = :ciphertext, description = coalesce(:description, description), "
    f"version = version + 1, update_time = now() WHERE name = :name RETURNING {SECRET_COLUMNS}",
    SECRET_RESOURCE,
    SECRET_DETAIL,
)
DELETE_SECRET = audited("DELETE FROM secrets WHERE name = :name RETURNING name", SECRET_RESOURCE)
SELECT_SECRETS = Query(f"SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name")
SELECT_SEALED = Query("SELECT name, key_id, ciphertext FROM secrets WHERE name = ANY(:names)")
SELECT_NOT_UNDER_KEY = Query(
    "SELECT name, key_id, ciphertext, version FROM secrets WHERE key_id <> :key_id ORDER BY name LIMIT :limit"
)
# Guarded by the version read, so that a rotation never overwrites a concurrent update.
RESEAL = "UPDATE secrets SET key_id = :key_id, ciphertext = :ciphertext WHERE name = :name AND version = :version"
RESEAL_SECRET = Query(RESEAL + " RETURNING name")
# The first re-seal of a rotation: the rotation's one audit row (no resource: it is about every
# secret not under the current key), naming the key it re-sealed under.
RESEAL_SECRET_AUDITED = audited(
    RESEAL + " RETURNING name, key_id", "''", "jsonb_build_object('key_id', changed.key_id)"
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

    async def create(self, name: str, description: str, sealed: Sealed, audit: AuditContext) -> SecretRecord:
        params = {
            "name": name,
            "description": description,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
            **audit.params(),
        }
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_SECRET, params)).one_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"secret {name!r} already exists") from error
        audit.mark_recorded()
        return SecretRecord(**row._asdict())

    async def update(
        self, name: str, description: str | None, sealed: Sealed, audit: AuditContext
    ) -> SecretRecord:
        params = {
            "name": name,
            "description": description,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
            **audit.params(),
        }
        async with statement(self._engine) as conn:
            row = (await conn.execute(UPDATE_SECRET, params)).first_row()
        if row is None:
            raise NotFound(f"secret {name!r} not found")
        audit.mark_recorded()
        return SecretRecord(**row._asdict())

    async def delete(self, name: str, audit: AuditContext) -> None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(DELETE_SECRET, {"name": name, **audit.params()})).first_row()
        if row is None:
            raise NotFound(f"secret {name!r} not found")
        audit.mark_recorded()

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

    async def reseal(self, secret: SealedSecret, sealed: Sealed, audit: AuditContext) -> bool:
        """Re-seal one secret unless it changed since it was read; the rotation's audit row
        goes with the first one that succeeds."""
        params = {
            "name": secret.name,
            "version": secret.version,
            "key_id": sealed.key_id,
            "ciphertext": sealed.ciphertext,
        }
        query = RESEAL_SECRET
        if not audit.recorded:
            query, params = RESEAL_SECRET_AUDITED, {**params, **audit.params()}
        async with statement(self._engine) as conn:
            row = (await conn.execute(query, params)).first_row()
        if row is not None and query is RESEAL_SECRET_AUDITED:
            audit.mark_recorded()
        return row is not None
