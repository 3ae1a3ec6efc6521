"""The secrets a claimed attempt needs, opened at the last moment (the claim) for its worker only.

Which secrets an executor needs is read from its templates (taskmesh.secrets.references: literal
names only), once per executor text. Opening takes one query per claim batch, and none at all
for batches whose executors reference no secret (a substring test of the executor's JSON). A
secret that does not exist, or that no configured key opens, is left out: the worker's template
then fails the attempt non-retryably, naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Protocol

from taskmesh.db.secrets import SealedSecret
from taskmesh.secrets.box import SecretBox, UndecryptableSecret
from taskmesh.secrets.references import (
    SECRETS,
    InvalidSecretReference,
    declared_secrets,
    referenced_secrets,
    strings_of,
)

log = logging.getLogger(__name__)

MAX_CACHED_EXECUTORS = 4096


class SealedSecrets(Protocol):
    """taskmesh.db.secrets.SecretRepository."""

    async def sealed(self, names: Sequence[str]) -> list[SealedSecret]: ...


class SecretResolver:
    def __init__(self, store: SealedSecrets | None, box: SecretBox | None) -> None:
        self._store = store
        self._box = box
        self._names: dict[str, frozenset[str]] = {}

    async def resolve(self, executors: Sequence[str | None]) -> list[dict[str, str]]:
        """For each executor (protobuf JSON text; None for a claim not granted), the values of
        the secrets it references."""
        wanted = [self.names(text) if text else frozenset() for text in executors]
        every = frozenset().union(*wanted)
        if not every:
            return [{} for _ in executors]
        values = await self._open(sorted(every))
        return [{name: values[name] for name in names if name in values} for names in wanted]

    def names(self, executor_json: str) -> frozenset[str]:
        """The secrets an executor names: in its templates, or (Python tasks) in its secrets list."""
        if SECRETS not in executor_json:
            return frozenset()
        cached = self._names.get(executor_json)
        if cached is None:
            if len(self._names) >= MAX_CACHED_EXECUTORS:
                self._names.clear()
            executor = json.loads(executor_json)
            try:
                cached = referenced_secrets(strings_of(executor)) | declared_secrets(executor)
            except InvalidSecretReference:
                cached = declared_secrets(
                    executor
                )  # refused at CreateJob; an older job's template fails by itself
            self._names[executor_json] = cached
        return cached

    async def _open(self, names: Sequence[str]) -> dict[str, str]:
        if self._store is None or self._box is None:
            return {}
        values: dict[str, str] = {}
        for secret in await self._store.sealed(names):
            try:
                values[secret.name] = self._box.open(secret.name, secret.sealed)
            except UndecryptableSecret as error:
                log.error("%s", error)
        return values


NO_SECRETS = SecretResolver(None, None)
