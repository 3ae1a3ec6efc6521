"""Users and their password hashes."""

from __future__ import annotations

from typing import Any

from taskmesh.db.engine import Database, statement, text
from taskmesh.errors import AlreadyExists, NotFound
from taskmesh.records import UserRecord
from taskmesh.states import Role

USER_COLUMNS = "username, password_hash, role, create_time"

INSERT_USER = text(
    f"INSERT INTO users (username, password_hash, role) VALUES (:username, :password_hash, :role) "
    f"RETURNING {USER_COLUMNS}"
)
INSERT_USER_IF_MISSING = text(
    "INSERT INTO users (username, password_hash, role) VALUES (:username, :password_hash, :role) "
    "ON CONFLICT (username) DO NOTHING"
)
SELECT_USER = text(f"SELECT {USER_COLUMNS} FROM users WHERE username = :username")
SELECT_USERS = text(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")
DELETE_USER = text("DELETE FROM users WHERE username = :username")


class UserRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(self, username: str, password_hash: str, role: Role) -> UserRecord:
        params = {"username": username, "password_hash": password_hash, "role": role.value}
        try:
            async with statement(self._engine) as conn:
                row = (await conn.execute(INSERT_USER, params)).one()
        except AlreadyExists as error:
            raise AlreadyExists(f"user {username!r} already exists") from error
        return _user(row)

    async def create_if_missing(self, username: str, password_hash: str, role: Role) -> bool:
        params = {"username": username, "password_hash": password_hash, "role": role.value}
        async with statement(self._engine) as conn:
            result = await conn.execute(INSERT_USER_IF_MISSING, params)
        return bool(result.rowcount)

    async def find(self, username: str) -> UserRecord | None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_USER, {"username": username})).first()
        return None if row is None else _user(row)

    async def all(self) -> list[UserRecord]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_USERS)).all()
        return [_user(row) for row in rows]

    async def delete(self, username: str) -> None:
        async with statement(self._engine) as conn:
            result = await conn.execute(DELETE_USER, {"username": username})
        if result.rowcount == 0:
            raise NotFound(f"user {username!r} not found")


def _user(row: Any) -> UserRecord:
    return UserRecord(
        username=row.username,
        password_hash=row.password_hash,
        role=Role(row.role),
        create_time=row.create_time,
    )
