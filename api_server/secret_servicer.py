"""SecretService: a thin adapter over api_server.secrets. No answer ever carries a value."""

from __future__ import annotations

from typing import Any

from google.protobuf.empty_pb2 import Empty

from api_server import secrets as policy
from api_server.secrets import Secrets
from taskmesh.convert import timestamp
from taskmesh.db.secrets import SecretRecord
from taskmesh.rpc.guard import current_audit
from taskmesh.v1 import secret_service_pb2 as pb
from taskmesh.v1 import secret_service_pb2_grpc

Context = Any  # grpc.aio.ServicerContext


class SecretServicer(secret_service_pb2_grpc.SecretServiceServicer):
    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets

    async def CreateSecret(self, request: pb.CreateSecretRequest, context: Context) -> pb.Secret:
        record = await self._secrets.create(
            policy.secret_name(request.name),
            policy.secret_value(request.value),
            policy.description(request.description),
            current_audit(),
        )
        return secret_to_proto(record)

    async def ListSecrets(self, request: pb.ListSecretsRequest, context: Context) -> pb.ListSecretsResponse:
        return pb.ListSecretsResponse(secrets=[secret_to_proto(r) for r in await self._secrets.list()])

    async def UpdateSecret(self, request: pb.UpdateSecretRequest, context: Context) -> pb.Secret:
        text = policy.description(request.description) if request.HasField("description") else None
        record = await self._secrets.update(
            policy.secret_name(request.name), policy.secret_value(request.value), text, current_audit()
        )
        return secret_to_proto(record)

    async def DeleteSecret(self, request: pb.DeleteSecretRequest, context: Context) -> Empty:
        await self._secrets.delete(policy.secret_name(request.name), current_audit())
        return Empty()

    async def RotateSecrets(self, request: pb.RotateSecretsRequest, context: Context) -> pb.RotateSecretsResponse:
        rotated, key_id = await self._secrets.rotate(current_audit())
        return pb.RotateSecretsResponse(rotated=rotated, key_id=key_id)


def secret_to_proto(record: SecretRecord) -> pb.Secret:
    return pb.Secret(
        name=record.name,
        description=record.description,
        version=record.version,
        key_id=record.key_id,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )
