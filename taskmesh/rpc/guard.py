"""The server interceptor every taskmesh gRPC server runs: it authenticates the caller, checks
the permission table, and turns exceptions into status codes, so servicers do neither."""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

from taskmesh.auth import permissions
from taskmesh.auth.tokens import Principal, TokenCodec, bearer_token
from taskmesh.errors import PermissionDenied, TaskmeshError
from taskmesh.rpc.errors import status_for

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context = Any  # grpc.aio.ServicerContext; typed loosely because grpc's stubs mix sync and aio
Authorize = Callable[[Context], Principal | None]

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _principal.get()
    if principal is None:
        raise PermissionDenied("this method needs an authenticated caller")
    return principal


class GuardInterceptor(aio.ServerInterceptor):
    def __init__(self, tokens: TokenCodec) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return _wrap(handler, lambda context: self._authorize(method, context), method)

    def _authorize(self, method: str, context: Context) -> Principal | None:
        if permissions.is_public(method):
            return None
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        principal = self._tokens.verify(bearer_token(authorization if isinstance(authorization, str) else None))
        if not permissions.allowed(method, principal.role):
            raise PermissionDenied(f"role {principal.role.value} may not call {method.rsplit('/', 1)[-1]}")
        return principal


async def _fail(context: Context, error: Exception, method: str) -> None:
    if isinstance(error, TaskmeshError):
        await context.abort(status_for(error), error.message)
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.exception("unhandled error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")


async def _responses(result: Any) -> AsyncIterator[Any]:
    """Streaming behaviours either yield responses or write them with context.write()."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result


def _wrap(handler: Handler, authorize: Authorize, method: str) -> Handler:
    """Return a handler of the same kind whose behaviour runs guarded."""
    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            try:
                _principal.set(authorize(context))
                return await inner_uu(request, context)
            except aio.AbortError:
                raise
            except Exception as error:
                await _fail(context, error, method)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                _principal.set(authorize(context))
                async for response in _responses(inner_us(request, context)):
                    yield response
            except aio.AbortError:
                raise
            except Exception as error:
                await _fail(context, error, method)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream,
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.stream_stream is not None:
        inner_ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                _principal.set(authorize(context))
                async for response in _responses(inner_ss(requests, context)):
                    yield response
            except aio.AbortError:
                raise
            except Exception as error:
                await _fail(context, error, method)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream,
            handler.request_deserializer,
            handler.response_serializer,
        )
    return handler  # stream-unary: taskmesh defines none
