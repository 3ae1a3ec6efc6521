"""What AuthService does for service accounts, API keys and the audit log, free of gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskmesh.audit import AuditContext, AuditEvent, AuditQuery
from taskmesh.auth import api_keys
from taskmesh.auth.tokens import Principal
from taskmesh.db.audit import AuditRepository
from taskmesh.db.service_accounts import ServiceAccountRepository
from taskmesh.records import ApiKeyRecord, UserRecord
from taskmesh.service_errors import InvalidArgument
from taskmesh.states import Role

SERVICE_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})


@dataclass(frozen=True)
class KeyLifetimes:
    default: timedelta
    maximum: timedelta


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKeyRecord
    key: str  # shown once


class ServiceAccounts:
    def __init__(
        self, accounts: ServiceAccountRepository, audit_events: AuditRepository, lifetimes: KeyLifetimes
    ) -> None:
        self._accounts = accounts
        self._audit_events = audit_events
        self._lifetimes = lifetimes

    async def create(
        self, name: str, role: Role, description: str, caller: Principal, audit: AuditContext
    ) -> UserRecord:
        """A service account may be ADMIN (only admins create accounts, and must ask for it by
        name: the role has no default); never WORKER (workers have their account)."""
        if role not in SERVICE_ROLES:
            raise InvalidArgument("role", "a service account's role must be ADMIN, OPERATOR or VIEWER")
        return await self._accounts.create(name, role, description, caller.username, audit)

    async def all(self) -> list[UserRecord]:
        return await self._accounts.all()

    async def delete(self, name: str, audit: AuditContext) -> None:
        await self._accounts.delete(name, audit)

    async def create_key(
        self, account: str, name: str, ttl: timedelta | None, caller: Principal, audit: AuditContext
    ) -> CreatedKey:
        lifetime = self._lifetimes.default if ttl is None else ttl
        if lifetime <= timedelta(0):
            raise InvalidArgument("ttl", "must be positive")
        if lifetime > self._lifetimes.maximum:
            raise InvalidArgument("ttl", f"must be at most {self._lifetimes.maximum.days} days")
        made = api_keys.new_key()
        record = await self._accounts.create_key(
            account,
            name,
            made.key_id,
            made.secret_hash,
            datetime.now(UTC) + lifetime,
            caller.username,
            audit,
        )
        return CreatedKey(record=record, key=made.key)

    async def keys(self, account: str) -> list[ApiKeyRecord]:
        return await self._accounts.keys(account)

    async def revoke_key(self, account: str, key_id: str, audit: AuditContext) -> None:
        await self._accounts.revoke_key(account, key_id, audit)

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        return await self._audit_events.list_events(query)
