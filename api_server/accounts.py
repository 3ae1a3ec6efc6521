"""What AuthService does, free of gRPC: logins, users, and the first accounts at start-up."""

from __future__ import annotations

import logging

from api_server.throttling import LoginThrottle
from taskmesh.audit import AuditContext
from taskmesh.auth.passwords import PasswordHashing
from taskmesh.auth.tokens import IssuedToken, Principal, TokenCodec
from taskmesh.db.users import UserRepository
from taskmesh.records import UserRecord
from taskmesh.service_errors import FailedPrecondition, Unauthenticated
from taskmesh.states import Role

log = logging.getLogger(__name__)


class Accounts:
    def __init__(
        self, users: UserRepository, tokens: TokenCodec, passwords: PasswordHashing, throttle: LoginThrottle
    ) -> None:
        self._users = users
        self._tokens = tokens
        self._passwords = passwords
        self._throttle = throttle

    async def login(self, username: str, password: str, address: str) -> IssuedToken:
        """An unknown user costs the same as a wrong password (a dummy hash is verified)."""
        async with self._passwords.slot():  # before counting: a busy server counts no failure
            ticket = await self._throttle.admit(username, address)
            user = await self._users.find(username)
            ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            raise Unauthenticated("wrong username or password")
        await self._throttle.succeeded(ticket)
        return self._tokens.issue(Principal(username=user.username, role=user.role), user.credential_version)

    async def create_user(self, username: str, password: str, role: Role, audit: AuditContext) -> UserRecord:
        return await self._users.create(username, await self._passwords.hash(password), role, audit)

    async def list_users(self) -> list[UserRecord]:
        return await self._users.all()

    async def update_user(
        self, username: str, role: Role | None, password: str | None, caller: Principal, audit: AuditContext
    ) -> UserRecord:
        """Change the role and/or password; the user's tokens stop working on every server."""
        if role is not None and username == caller.username and role != caller.role:
            raise FailedPrecondition("you cannot change your own role")
        password_hash = await self._passwords.hash(password) if password is not None else None
        return await self._users.update(username, role, password_hash, audit)

    async def delete_user(self, username: str, caller: Principal, audit: AuditContext) -> None:
        if username == caller.username:
            raise FailedPrecondition("you cannot delete your own account")
        await self._users.delete(username, audit)

    async def ensure_account(self, username: str, password: str, role: Role) -> None:
        """Create the account if it does not exist yet (first start); never changes one."""
        if await self._users.create_if_missing(username, await self._passwords.hash(password), role):
            log.info("created %s account %r", role.value.lower(), username)
