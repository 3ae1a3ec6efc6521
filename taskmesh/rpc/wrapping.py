"""Running a gRPC method inside a behaviour: the one place that knows the kinds of handlers.

An interceptor supplies `around(context, kind)`, an async context manager entered before the
method runs and left when it answers (or when a stream ends); it may raise, or turn errors into
status codes. The guard (auth, error mapping) and the telemetry (metrics, request id, failure
log) are both such behaviours. A behaviour may also check each request (`check`): unary
requests are then decoded without raising and checked inside `around`, streamed ones are
decoded strictly as the method reads them (see taskmesh.rpc.requests).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc

from taskmesh.rpc.requests import strict, tolerant

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context = Any  # grpc.aio.ServicerContext; typed loosely because grpc's stubs mix sync and aio
Around = Callable[[Context, str], AbstractAsyncContextManager[None]]
Check = Callable[[Any], None]

UNARY, SERVER_STREAM, BIDI_STREAM = "unary", "server_stream", "bidi_stream"


async def responses(result: Any) -> AsyncIterator[Any]:
    """Streaming behaviours either yield responses or write them with context.write()."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result


def _no_check(request: Any) -> None:
    return None


class WrappedHandlers:
    """An interceptor's wrapped handler of each method, made on the method's first call: the
    behaviours depend on the method only, and wrapping a handler on every call cost about a
    tenth of the api_server's CPU per RPC."""

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler, wrap: Callable[[], Handler]) -> Handler:
        known = self._by_method.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = wrap()
        self._by_method[method] = (handler, wrapped)
        return wrapped


def wrap_handler(handler: Handler, around: Around, check: Check | None = None) -> Handler:
    """A handler of the same kind whose behaviour runs inside `around`."""
    verify = check or _no_check
    unary_deserializer = tolerant(handler.request_deserializer) if check else handler.request_deserializer
    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            async with around(context, UNARY):
                verify(request)
                return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, unary_deserializer, handler.response_serializer)
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(context, SERVER_STREAM):
                verify(request)
                async for response in responses(inner_us(request, context)):
                    yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, unary_deserializer, handler.response_serializer)
    if handler.stream_stream is not None:
        inner_ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            async with around(context, BIDI_STREAM):
                async for response in responses(inner_ss(requests, context)):
                    yield response

        stream_deserializer = strict(handler.request_deserializer) if check else handler.request_deserializer
        return grpc.stream_stream_rpc_method_handler(
            stream_stream, stream_deserializer, handler.response_serializer
        )
    return handler  # stream-unary: taskmesh defines none
