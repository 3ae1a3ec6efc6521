"""The server interceptor every taskmesh gRPC server runs: it authenticates the caller (a valid
token whose user still holds its role and credential version, or an API key of a service
account), checks the permission table, refuses requests no method may see
(taskmesh.rpc.requests), and turns exceptions into status codes, so servicers do none of these.

For an audited method (permissions.AUDITED) it makes the call's AuditContext, which the
servicer passes on to the repository that writes the audit row with the change; the guard
itself records the call when it fails (its status code as outcome) or when it succeeded without
any repository recording it (see taskmesh.audit). A server built without an AuditRecorder (the
scheduler's: WorkerService has no audited method) audits nothing."""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
from grpc import aio

from taskmesh.audit import OK, AuditContext, AuditRecorder, resource_of
from taskmesh.auth import api_keys, permissions
from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.tokens import Principal, TokenCodec, bearer_token
from taskmesh.rpc import requests
from taskmesh.rpc.errors import status_for
from taskmesh.rpc.telemetry import request_id_of
from taskmesh.rpc.wrapping import Around, Context, Handler, WrappedHandlers, wrap_handler
from taskmesh.service_errors import PermissionDenied, ResourceExhausted, TaskmeshError

log = logging.getLogger(__name__)

Authenticate = Callable[[Context], Awaitable[Principal | None]]

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
_audit: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar("audit", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _principal.get()
    if principal is None:
        raise PermissionDenied("this method needs an authenticated caller")
    return principal


def current_audit() -> AuditContext:
    """The audit context of the audited RPC being served (pass it to the repository)."""
    audit = _audit.get()
    if audit is None:
        raise RuntimeError("current_audit() outside an audited method (see permissions.AUDITED)")
    return audit


class GuardInterceptor(aio.ServerInterceptor):
    def __init__(
        self, tokens: TokenCodec, credentials: CredentialDirectory, audit: AuditRecorder | None = None
    ) -> None:
        self._tokens = tokens
        self._credentials = credentials
        self._audit = audit
        self._handlers = WrappedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._handlers.get(method, handler, lambda: self._wrap(method, handler))

    def _wrap(self, method: str, handler: Handler) -> Handler:
        recorder = self._audit if method in permissions.AUDITED else None
        guarded = _guarded(lambda context: self._authenticate(method, context), method, recorder)
        return wrap_handler(handler, guarded, check=_checked(method) if recorder else requests.check)

    async def _authenticate(self, method: str, context: Context) -> Principal | None:
        if permissions.is_public(method):
            return None
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        bearer = bearer_token(authorization if isinstance(authorization, str) else None)
        if api_keys.looks_like_key(bearer):
            return await self._credentials.check_key(bearer)
        return await self._credentials.check(self._tokens.claims(bearer))


def _authorize(method: str, principal: Principal | None) -> None:
    if principal is not None and not permissions.allowed(method, principal.role):
        raise PermissionDenied(f"role {principal.role.value} may not call {method.rsplit('/', 1)[-1]}")


def _checked(method: str) -> Callable[[object], None]:
    """requests.check, noting first what the request names for the call's audit row."""

    def check(request: object) -> None:
        audit = _audit.get()
        if audit is not None:
            audit.resource = resource_of(method, request)
        requests.check(request)

    return check


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


def _guarded(authenticate: Authenticate, method: str, recorder: AuditRecorder | None) -> Around:
    @asynccontextmanager
    async def guarded(context: Context, kind: str) -> AsyncIterator[None]:
        audit: AuditContext | None = None
        principal: Principal | None = None
        try:
            principal = await authenticate(context)
            if recorder is not None:
                audit = AuditContext.of(principal, method, request_id_of(context))
                _audit.set(audit)
            _authorize(method, principal)
            _principal.set(principal)
            yield
            if recorder is not None and audit is not None and not audit.recorded:
                await recorder.record(audit, OK)  # nothing changed: no statement wrote its row
        except aio.AbortError:
            raise
        except Exception as error:
            if recorder is not None:  # refused: by then `principal` is None if it was not known
                audit = audit or AuditContext.of(principal, method, request_id_of(context))
                await recorder.record(audit, _outcome(error))
            await _fail(context, error, method)

    return guarded


def _outcome(error: Exception) -> str:
    if isinstance(error, TaskmeshError):
        return status_for(error).name
    if isinstance(error, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED.name
    return grpc.StatusCode.INTERNAL.name
