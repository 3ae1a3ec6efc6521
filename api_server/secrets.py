"""What SecretService does, free of gRPC: seal values on the way in, never let one out."""

from __future__ import annotations

import logging

from taskmesh.audit import AuditContext
from taskmesh.db.secrets import SecretRecord, SecretRepository
from taskmesh.secrets.box import SecretBox, UndecryptableSecret
from taskmesh.secrets.references import NAME
from taskmesh.service_errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

MIN_VALUE_CHARS = 4  # shorter values could not be masked without masking everything else
MAX_VALUE_BYTES = 64 * 1024
MAX_DESCRIPTION = 1024
ROTATE_BATCH = 100
OFF = 'secrets are off: set TASKMESH_SECRET_KEYS (see README "Secrets")'


def secret_name(name: str, field: str = "name") -> str:
    if not name:
        raise InvalidArgument(field, "is required")
    if not NAME.match(name):
        raise InvalidArgument(field, "must be 1-128 letters, digits and '_', not starting with a digit")
    return name


def secret_value(value: str) -> str:
    if len(value) < MIN_VALUE_CHARS:
        raise InvalidArgument(
            "value", f"must be at least {MIN_VALUE_CHARS} characters (shorter ones cannot be masked)"
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidArgument("value", f"must be at most {MAX_VALUE_BYTES} bytes")
    return value


def description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise InvalidArgument("description", f"must be at most {MAX_DESCRIPTION} characters")
    return value


class Secrets:
    def __init__(self, repository: SecretRepository, box: SecretBox | None) -> None:
        self._repository = repository
        self._box = box

    async def create(self, name: str, value: str, text: str, audit: AuditContext) -> SecretRecord:
        return await self._repository.create(name, text, self._sealer().seal(name, value), audit)

    async def update(self, name: str, value: str, text: str | None, audit: AuditContext) -> SecretRecord:
        return await self._repository.update(name, text, self._sealer().seal(name, value), audit)

    async def delete(self, name: str, audit: AuditContext) -> None:
        await self._repository.delete(name, audit)

    async def list(self) -> list[SecretRecord]:
        return await self._repository.all()

    async def rotate(self, audit: AuditContext) -> tuple[int, str]:
        """Re-seal every secret not under the current key; (how many, the current key id)."""
        box = self._sealer()
        rotated = 0
        while batch := await self._repository.not_under_key(box.current, ROTATE_BATCH):
            for secret in batch:
                try:
                    value = box.open(secret.name, secret.sealed)
                except UndecryptableSecret as error:
                    raise FailedPrecondition(
                        f"{error}: add that key back to TASKMESH_SECRET_KEYS to rotate"
                    ) from None
                rotated += await self._repository.reseal(secret, box.seal(secret.name, value), audit)
        log.info("re-sealed %d secrets under key %s", rotated, box.current)
        return rotated, box.current

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise FailedPrecondition(OFF)
        return self._box
