"""The server interceptor every taskmesh gRPC server runs: it authenticates the caller (a valid
token whose user still holds its role and credential version), checks the permission table,
refuses requests no method may see (taskmesh.rpc.requests), and turns exceptions into status
codes, so servicers do none of these."""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
from grpc import aio

from taskmesh.auth import permissions
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.tokens import Principal, TokenCodec, bearer_token
from taskmesh.rpc import requests
from taskmesh.rpc.errors import status_for
from taskmesh.rpc.wrapping import Around, Context, Handler, wrap_handler
from taskmesh.service_errors import PermissionDenied, ResourceExhausted, TaskmeshError

log = logging.getLogger(__name__)

Authorize = Callable[[Context], Awaitable[Principal | None]]

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _principal.get()
    if principal is None:
        raise PermissionDenied("this method needs an authenticated caller")
    return principal


class GuardInterceptor(aio.ServerInterceptor):
    def __init__(self, tokens: TokenCodec, credentials: CredentialDirectory) -> None:
        self._tokens = tokens
        self._credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        guarded = _guarded(lambda context: self._authorize(method, context), method)
        return wrap_handler(handler, guarded, check=requests.check)

    async def _authorize(self, method: str, context: Context) -> Principal | None:
        if permissions.is_public(method):
            return None
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        claims = self._tokens.claims(bearer_token(authorization if isinstance(authorization, str) else None))
        principal = await self._credentials.check(claims)
        if not permissions.allowed(method, principal.role):
            raise PermissionDenied(f"role {principal.role.value} may not call {method.rsplit('/', 1)[-1]}")
        return principal


async def _fail(context: Context, error: Exception, method: str) -> None:
    if isinstance(error, ResourceExhausted):
        # Envoy passes it on as the HTTP Retry-After header of the 429.
        context.set_trailing_metadata((("retry-after", str(math.ceil(error.retry_after))),))
    if isinstance(error, TaskmeshError):
        await context.abort(status_for(error), error.message)
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.exception("unhandled error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")


def _guarded(authorize: Authorize, method: str) -> Around:
    @asynccontextmanager
    async def guarded(context: Context, kind: str) -> AsyncIterator[None]:
        try:
            _principal.set(await authorize(context))
            yield
        except aio.AbortError:
            raise
        except Exception as error:
            await _fail(context, error, method)

    return guarded
