"""Users (people and service accounts), their password hashes and credential versions.

Every statement that creates a user or changes its role or password draws a new credential
version from one sequence, so that (username, version) names one set of credentials for ever:
tokens issued for it stop working once it changes, even if the user is deleted and recreated.
The methods here are about people (kind USER); service accounts are taskmesh.db.service_accounts',
but the credential map (credential_stamp, credentials, api_keys) covers both, and the keys.
Every change records its call's audit row in the same statement (taskmesh.db.audit).
"""

from __future__ import annotations

from typing import Any

from taskmesh.audit import AuditContext
from taskmesh.auth.api_keys import KeyCredential
from taskmesh.db.audit import audited
from taskmesh.db.pg import Database, Query, statement
from taskmesh.records import Credential, CredentialStamp, UserRecord
from taskmesh.service_errors import AlreadyExists, NotFound
from taskmesh.states import Role

USER_COLUMNS = "username, password_hash, role, create_time, credential_version, kind, description, created_by"
USER_RESOURCE = "'users/' || changed.username"

INSERT_USER = audited(
    f"INSERT INTO users (username, password_hash, role) VALUES (:username, :password_hash, :role) "
    f"RETURNING {USER_COLUMNS}",
    USER_RESOURCE,
    "jsonb_build_object('role', changed.role)",
)
INSERT_USER_IF_MISSING = Query(
    "INSERT INTO users (username, password_hash, role) VALUES (:username, :password_hash, :role) "
    "ON CONFLICT (username) DO NOTHING"
)
SELECT_USER = Query(f"SELECT {USER_COLUMNS} FROM users WHERE username = :username")
SELECT_USERS = Query(f"SELECT {USER_COLUMNS} FROM users WHERE kind = 'USER' ORDER BY username")
# A NULL parameter keeps the column as it is; either change gives the user a new version. The
# audit detail says what changed (never the password).
UPDATE_USER = audited(
    "UPDATE users SET role = coalesce(:role, role), password_hash = coalesce(:password_hash, password_hash), "
    "credential_version = nextval('credential_version_seq') WHERE username = :username AND kind = 'USER' "
    f"RETURNING {USER_COLUMNS}",
    USER_RESOURCE,
    "jsonb_build_object('role', changed.role, 'password_changed', CAST(:password_changed AS boolean))",
)
DELETE_USER = audited(
    "DELETE FROM users WHERE username = :username AND kind = 'USER' RETURNING username", USER_RESOURCE
)
# Changes whenever any user or key is created or changed (the top version grows) or only
# deleted (a count falls): a cheap test of whether the credential map must be reloaded.
SELECT_CREDENTIAL_STAMP = Query(
    """
    SELECT greatest((SELECT coalesce(max(credential_version), 0) FROM users),
                    (SELECT coalesce(max(credential_version), 0) FROM api_keys)) AS top_version,
           (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM api_keys) AS keys
    """
)
SELECT_CREDENTIALS = Query("SELECT username, role, credential_version FROM users")
SELECT_KEY_CREDENTIALS = Query("SELECT id, service_account, secret_hash, expire_time FROM api_keys")


class UserRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(self, username: str, password_hash: str, role: Role, audit: AuditContext) -> UserRecord:
        params = {"username": username, "password_hash": password_hash, "role": role.value, **audit.params()}
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_USER, params)).one_row()
        except AlreadyExists as error:
            raise AlreadyExists(f"a user or service account {username!r} already exists") from error
        audit.mark_recorded()
        return _user(row)

    async def create_if_missing(self, username: str, password_hash: str, role: Role) -> bool:
        params = {"username": username, "password_hash": password_hash, "role": role.value}
        async with statement(self._engine) as conn:
            result = await conn.execute(INSERT_USER_IF_MISSING, params)
        return bool(result.rowcount)

    async def find(self, username: str) -> UserRecord | None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_USER, {"username": username})).first_row()
        return None if row is None else _user(row)

    async def all(self) -> list[UserRecord]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_USERS)).all_rows()
        return [_user(row) for row in rows]

    async def update(
        self, username: str, role: Role | None, password_hash: str | None, audit: AuditContext
    ) -> UserRecord:
        """Change the role and/or the password (None keeps it); revokes the user's tokens."""
        params = {
            "username": username,
            "role": role.value if role else None,
            "password_hash": password_hash,
            "password_changed": password_hash is not None,
            **audit.params(),
        }
        async with statement(self._engine) as conn:
            row = (await conn.execute(UPDATE_USER, params)).first_row()
        if row is None:
            raise NotFound(f"user {username!r} not found")
        audit.mark_recorded()
        return _user(row)

    async def delete(self, username: str, audit: AuditContext) -> None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(DELETE_USER, {"username": username, **audit.params()})).first_row()
        if row is None:
            raise NotFound(f"user {username!r} not found")
        audit.mark_recorded()

    async def credential_stamp(self) -> CredentialStamp:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_CREDENTIAL_STAMP)).one_row()
        return CredentialStamp(top_version=int(row.top_version), users=int(row.users), keys=int(row.keys))

    async def credentials(self) -> list[Credential]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_CREDENTIALS)).all_rows()
        return [Credential(row.username, Role(row.role), int(row.credential_version)) for row in rows]

    async def api_keys(self) -> list[KeyCredential]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_KEY_CREDENTIALS)).all_rows()
        return [KeyCredential(row.id, row.service_account, row.secret_hash, row.expire_time) for row in rows]


def _user(row: Any) -> UserRecord:
    return UserRecord(
        username=row.username,
        password_hash=row.password_hash,
        role=Role(row.role),
        create_time=row.create_time,
        credential_version=int(row.credential_version),
        kind=row.kind,
        description=row.description,
        created_by=row.created_by,
    )
