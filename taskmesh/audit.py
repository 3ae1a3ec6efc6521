"""Who is making a mutating call, for the audit row its change writes.

The guard (taskmesh.rpc.guard) makes one AuditContext per call of an audited method
(taskmesh.auth.permissions.AUDITED) and hands it to the servicer; the servicer passes it on,
explicitly, to the repository that makes the change, which writes the audit row in the same
statement (taskmesh.db.audit.audited) and marks the context recorded. A call that fails is
recorded by the guard as a refusal (its status code as outcome) in a statement of its own, as
there is no change to share a transaction with; a call that succeeded without its repository
recording it (nothing changed: cancelling a run already cancelling) is recorded by the guard
the same way. So every audited call leaves exactly one row, or two in the rare case of a call
that changed something and failed afterwards.

Nothing secret goes into an audit row: the caller, its role, the key id (not the key), the
method, the resource name, the request id, the outcome and small details chosen by the
repositories (counts, ids), never request bodies, header or env values, passwords or keys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskmesh.auth.tokens import Principal
from taskmesh.batching import GroupCommitter
from taskmesh.service_errors import TaskmeshError

log = logging.getLogger(__name__)

OK = "OK"
ANONYMOUS = "anonymous"


@dataclass
class AuditContext:
    """One audited call. `recorded` is set by the repository whose statement wrote its row."""

    actor: str
    role: str
    method: str
    request_id: str = ""
    api_key_id: str = ""
    # What the request names (resource_of), for the rows the guard writes itself.
    resource: str = ""
    recorded: bool = field(default=False, compare=False)

    @classmethod
    def system(cls, actor: str, method: str = "") -> AuditContext:
        """For changes made outside an RPC (start-up, tests): recorded under `actor`."""
        return cls(actor=actor, role="", method=method)

    @classmethod
    def of(cls, principal: Principal | None, method: str, request_id: str | None) -> AuditContext:
        if principal is None:
            return cls(actor=ANONYMOUS, role="", method=method, request_id=request_id or "")
        return cls(
            actor=principal.username,
            role=principal.role.value,
            method=method,
            request_id=request_id or "",
            api_key_id=principal.api_key_id,
        )

    def params(self) -> dict[str, Any]:
        """Bind parameters of taskmesh.db.audit.audited statements."""
        return {
            "audit_actor": self.actor,
            "audit_role": self.role,
            "audit_key": self.api_key_id,
            "audit_method": self.method,
            "audit_request_id": self.request_id,
        }

    def mark_recorded(self) -> None:
        self.recorded = True


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: Any  # datetime
    actor: str
    role: str
    api_key_id: str
    method: str
    resource: str
    request_id: str
    outcome: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class AuditQuery:
    """ListAuditEvents' filters (each optional) and paging (newest first, before_id)."""

    actor: str | None = None
    resource: str | None = None
    method: str | None = None
    start_time: Any = None  # datetime, inclusive
    end_time: Any = None  # datetime, exclusive
    before_id: int | None = None
    limit: int = 100


# Where each audited method's request names its resource: (field path, resource prefix).
RESOURCE_FIELDS: dict[str, tuple[str, str]] = {
    "CreateJob": ("job.name", "jobs/name="),
    "UpdateJob": ("job.id", "jobs/"),
    "DeleteJob": ("id", "jobs/"),
    "TriggerJob": ("id", "jobs/"),
    "PauseJob": ("id", "jobs/"),
    "ResumeJob": ("id", "jobs/"),
    "CancelRun": ("id", "runs/"),
    "RetryRun": ("id", "runs/"),
    "CreateUser": ("username", "users/"),
    "UpdateUser": ("username", "users/"),
    "DeleteUser": ("username", "users/"),
    "CreateServiceAccount": ("name", "users/"),
    "DeleteServiceAccount": ("name", "users/"),
    "CreateApiKey": ("service_account", "users/"),
    "RevokeApiKey": ("key_id", "apiKeys/"),
    "CreateNotificationChannel": ("channel.name", "notificationChannels/name="),
    "UpdateNotificationChannel": ("channel.id", "notificationChannels/"),
    "DeleteNotificationChannel": ("id", "notificationChannels/"),
    "TestNotificationChannel": ("id", "notificationChannels/"),
    "CreateNotificationRule": ("rule.name", "notificationRules/name="),
    "UpdateNotificationRule": ("rule.id", "notificationRules/"),
    "DeleteNotificationRule": ("id", "notificationRules/"),
    "CreateSecret": ("name", "secrets/"),
    "UpdateSecret": ("name", "secrets/"),
    "DeleteSecret": ("name", "secrets/"),
}
MAX_RESOURCE_LENGTH = 200


def resource_of(method: str, request: Any) -> str:
    """The resource a request names ('' if none): for the rows of refused calls, whose change
    (which would name it from the database) never happened."""
    spec = RESOURCE_FIELDS.get(method.rsplit("/", 1)[-1])
    if spec is None:
        return ""
    path, prefix = spec
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part, "")
    return f"{prefix}{value}"[:MAX_RESOURCE_LENGTH] if isinstance(value, str) and value else ""


class AuditStore(Protocol):
    """taskmesh.db.audit.AuditRepository."""

    async def record(
        self, entries: Sequence[tuple[AuditContext, str, str, dict[str, Any] | None]]
    ) -> list[None]: ...


class AuditRecorder:
    """Writes the rows the guard owns (refusals, and calls whose change wrote none), several
    concurrent ones in one statement. A failure to write is logged, never raised: the call
    already has its answer."""

    def __init__(self, store: AuditStore) -> None:
        self._committer: GroupCommitter[tuple[AuditContext, str, str, dict[str, Any] | None], None] = (
            GroupCommitter(store.record, max_batch=200)
        )

    async def record(self, audit: AuditContext, outcome: str) -> None:
        try:
            await self._committer.submit((audit, audit.resource, outcome, None))
        except TaskmeshError as error:
            log.warning("cannot write the audit row of %s: %s", audit.method, error.message)
