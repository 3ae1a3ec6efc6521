"""The server interceptor that observes every RPC: request id, metrics, a log line per failure.

It runs outside the guard interceptor, so that it sees the status the guard mapped errors to.

- The request id comes from the `x-request-id` metadata (Envoy generates one per request and
  passes it to the upstream); it is kept in taskmesh.logs.request_id for the call's duration,
  so that every log line written while serving it carries it.
- grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code} and the
  grpc_server_handling_seconds histogram (the names go-grpc-prometheus uses, which dashboards
  know); a stream's time is its whole life.
- One log line per failed RPC with method, code and request id: INFO for the caller's
  mistakes (bad argument, not found, no permission, cancelled), WARNING for the server's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from typing import Any, TypeAlias

import grpc
from grpc import aio
from prometheus_client import Counter, Histogram

from taskmesh import logs

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context = Any  # grpc.aio.ServicerContext

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_LENGTH = 128
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by method and status code",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status (a stream's whole life)",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)


# Children by label values, so that an RPC costs two dict lookups rather than two labels() calls
# (methods are the servers' own: unknown ones never reach an interceptor's handler).
@lru_cache(maxsize=4096)
def _handled(kind: str, method: str, code: str) -> Any:
    return HANDLED.labels(kind, *split_method(method), code)


@lru_cache(maxsize=1024)
def _handling_seconds(kind: str, method: str) -> Any:
    return HANDLING_SECONDS.labels(kind, *split_method(method))


def request_id_of(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and value:
            return value[:MAX_REQUEST_ID_LENGTH]
    return None


def split_method(method: str) -> tuple[str, str]:
    """'/taskmesh.v1.JobService/GetJob' -> ('taskmesh.v1.JobService', 'GetJob')."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name


class _Call:
    """The bookkeeping of one RPC."""

    def __init__(self, kind: str, method: str, context: Context) -> None:
        self._kind = kind
        self._method = method
        self._context = context
        self._started = time.perf_counter()
        # Each RPC runs in a task of its own, so the value ends with the call.
        logs.request_id.set(request_id_of(context))

    def finish(self, error: BaseException | None) -> None:
        code = _code(self._context, error)
        _handled(self._kind, self._method, code.name).inc()
        _handling_seconds(self._kind, self._method).observe(time.perf_counter() - self._started)
        if code != grpc.StatusCode.OK:
            level = logging.WARNING if code in SERVER_ERRORS else logging.INFO
            log.log(
                level,
                "rpc %s failed: %s",
                self._method,
                code.name,
                extra={"method": self._method, "code": code.name},
            )


def _code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    code = context.code()  # set by abort() or set_code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN  # grpc's answer to a stray exception


class TelemetryInterceptor(aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _observed(handler, handler_call_details.method)


def _observed(handler: Handler, method: str) -> Handler:
    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            call = _Call("unary", method, context)
            try:
                response = await inner_uu(request, context)
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)
            return response

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call("server_stream", method, context)
            try:
                async for response in _responses(inner_us(request, context)):
                    yield response
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_stream is not None:
        inner_ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call("bidi_stream", method, context)
            try:
                async for response in _responses(inner_ss(requests, context)):
                    yield response
            except BaseException as error:
                call.finish(error)
                raise
            call.finish(None)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )
    return handler  # stream-unary: taskmesh defines none


async def _responses(result: Any) -> AsyncIterator[Any]:
    """Streaming behaviours either yield responses or write them with context.write()."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    else:
        await result
