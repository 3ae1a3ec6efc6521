"""Service accounts (users of kind SERVICE) and their API keys: one method per query.

A service account has no password; it calls with API keys, of which only the SHA-256 is kept
(taskmesh.auth.api_keys). Revoking a key deletes its row; deleting an account deletes its keys
(ON DELETE CASCADE): either way the credential map's stamp changes (taskmesh.db.users) and every
server drops them at its next refresh. Every change records its call's audit row in the same
statement (taskmesh.db.audit); last-used times are written in batches (touch_keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskmesh.audit import AuditContext
from taskmesh.db.audit import audited
from taskmesh.db.pg import Database, Query, statement
from taskmesh.records import ApiKeyRecord, UserRecord
from taskmesh.service_errors import AlreadyExists, NotFound
from taskmesh.states import Role

ACCOUNT_COLUMNS = "username, password_hash, role, create_time, credential_version, kind, description, created_by"
KEY_COLUMNS = "id, service_account, name, create_time, expire_time, last_used_time, created_by"
ACCOUNT_RESOURCE = "'users/' || changed.username"
KEY_RESOURCE = "'apiKeys/' || changed.id"

INSERT_ACCOUNT = audited(
    "INSERT INTO users (username, password_hash, role, kind, description, created_by) "
    "VALUES (:name, NULL, :role, 'SERVICE', :description, :created_by) "
    f"RETURNING {ACCOUNT_COLUMNS}",
    ACCOUNT_RESOURCE,
    "jsonb_build_object('role', changed.role, 'kind', 'SERVICE')",
)
SELECT_ACCOUNTS = Query(f"SELECT {ACCOUNT_COLUMNS} FROM users WHERE kind = 'SERVICE' ORDER BY username")
DELETE_ACCOUNT = audited(
    "DELETE FROM users WHERE username = :name AND kind = 'SERVICE' RETURNING username",
    ACCOUNT_RESOURCE,
    "jsonb_build_object('kind', 'SERVICE')",
)
# Only a service account gets keys (people log in).
INSERT_KEY = audited(
    "INSERT INTO api_keys (id, service_account, name, secret_hash, expire_time, created_by) "
    "SELECT :key_id, username, :name, :secret_hash, :expire_time, :created_by FROM users "
    f"WHERE username = :account AND kind = 'SERVICE' RETURNING {KEY_COLUMNS}",
    KEY_RESOURCE,
    "jsonb_build_object('service_account', changed.service_account, 'expire_time', changed.expire_time)",
)
SELECT_KEYS = Query(
    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE service_account = :account ORDER BY create_time, id"
)
DELETE_KEY = audited(
    "DELETE FROM api_keys WHERE id = :key_id AND service_account = :account RETURNING id, service_account",
    KEY_RESOURCE,
    "jsonb_build_object('service_account', changed.service_account)",
)
ACCOUNT_EXISTS = Query("SELECT 1 FROM users WHERE username = :account AND kind = 'SERVICE'")
# The latest use each api_server saw since its last write; never moves a time backwards.
TOUCH_KEYS = Query(
    """
    UPDATE api_keys AS k SET last_used_time = greatest(k.last_used_time, u.used)
    FROM unnest(CAST(:key_ids AS text[]), CAST(:used AS timestamptz[])) AS u(key_id, used)
    WHERE k.id = u.key_id
    """
)


class ServiceAccountRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(
        self, name: str, role: Role, description: str, created_by: str, audit: AuditContext
    ) -> UserRecord:
        params = {"name": name, "role": role.value, "description": description, "created_by": created_by}
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_ACCOUNT, {**params, **audit.params()})).one_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"a user or service account {name!r} already exists") from error
        audit.mark_recorded()
        return _account(row)

    async def all(self) -> list[UserRecord]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_ACCOUNTS)).all_rows()
        return [_account(row) for row in rows]

    async def delete(self, name: str, audit: AuditContext) -> None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(DELETE_ACCOUNT, {"name": name, **audit.params()})).first_row()
        if row is None:
            raise NotFound(f"service account {name!r} not found")
        audit.mark_recorded()

    async def create_key(
        self,
        account: str,
        name: str,
        key_id: str,
        secret_hash: str,
        expire_time: datetime,
        created_by: str,
        audit: AuditContext,
    ) -> ApiKeyRecord:
        params = {
            "account": account,
            "name": name,
            "key_id": key_id,
            "secret_hash": secret_hash,
            "expire_time": expire_time,
            "created_by": created_by,
            **audit.params(),
        }
        async with statement(self._engine) as conn:
            row = (await conn.execute(INSERT_KEY, params)).first_row()
        if row is None:
            raise NotFound(f"service account {account!r} not found")
        audit.mark_recorded()
        return _key(row)

    async def keys(self, account: str) -> list[ApiKeyRecord]:
        async with statement(self._engine) as conn:
            if (await conn.execute(ACCOUNT_EXISTS, {"account": account})).first_row() is None:
                raise NotFound(f"service account {account!r} not found")
            rows = (await conn.execute(SELECT_KEYS, {"account": account})).all_rows()
        return [_key(row) for row in rows]

    async def revoke_key(self, account: str, key_id: str, audit: AuditContext) -> None:
        async with statement(self._engine) as conn:
            row = (
                await conn.execute(DELETE_KEY, {"account": account, "key_id": key_id, **audit.params()})
            ).first_row()
        if row is None:
            raise NotFound(f"API key {key_id!r} of service account {account!r} not found")
        audit.mark_recorded()

    async def touch_keys(self, used: Mapping[str, datetime]) -> None:
        """Last-used times, one statement for all the keys."""
        params = {"key_ids": list(used), "used": list(used.values())}
        async with statement(self._engine) as conn:
            await conn.execute(TOUCH_KEYS, params)


def _account(row: Any) -> UserRecord:
    return UserRecord(
        username=row.username,
        password_hash=None,
        role=Role(row.role),
        create_time=row.create_time,
        credential_version=int(row.credential_version),
        kind=row.kind,
        description=row.description,
        created_by=row.created_by,
    )


def _key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.id,
        service_account=row.service_account,
        name=row.name,
        create_time=row.create_time,
        expire_time=row.expire_time,
        last_used_time=row.last_used_time,
        created_by=row.created_by,
    )
