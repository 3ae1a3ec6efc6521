"""What AuthService does, free of gRPC: logins, users, and the first accounts at start-up."""

from __future__ import annotations

import asyncio
import logging

from taskmesh.auth.passwords import hash_password, verify_password
from taskmesh.auth.tokens import IssuedToken, Principal, TokenCodec
from taskmesh.db.users import UserRepository
from taskmesh.errors import FailedPrecondition, Unauthenticated
from taskmesh.records import UserRecord
from taskmesh.states import Role

log = logging.getLogger(__name__)


class Accounts:
    def __init__(self, users: UserRepository, tokens: TokenCodec) -> None:
        self._users = users
        self._tokens = tokens

    async def login(self, username: str, password: str) -> IssuedToken:
        user = await self._users.find(username)
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
        if user is None or not ok:
            raise Unauthenticated("wrong username or password")
        return self._tokens.issue(Principal(username=user.username, role=user.role))

    async def create_user(self, username: str, password: str, role: Role) -> UserRecord:
        password_hash = await asyncio.to_thread(hash_password, password)
        return await self._users.create(username, password_hash, role)

    async def list_users(self) -> list[UserRecord]:
        return await self._users.all()

    async def delete_user(self, username: str, caller: Principal) -> None:
        if username == caller.username:
            raise FailedPrecondition("you cannot delete your own account")
        await self._users.delete(username)

    async def ensure_account(self, username: str, password: str, role: Role) -> None:
        """Create the account if it does not exist yet (first start); never changes one."""
        password_hash = await asyncio.to_thread(hash_password, password)
        if await self._users.create_if_missing(username, password_hash, role):
            log.info("created %s account %r", role.value.lower(), username)
