"""The server interceptor that observes every RPC: request id, metrics, a log line per failure.

It runs outside the guard interceptor, so that it sees the status the guard mapped errors to.

- The request id comes from the `x-request-id` metadata (Envoy generates one per request and
  passes it to the upstream); it is kept in taskmesh.process_logging.request_id for the call's duration,
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
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import grpc
from grpc import aio
from prometheus_client import Counter, Histogram

from taskmesh import process_logging
from taskmesh.rpc.wrapping import Around, Context, Handler, WrappedHandlers, wrap_handler

log = logging.getLogger(__name__)


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
        process_logging.request_id.set(request_id_of(context))

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
    def __init__(self) -> None:
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
        return self._handlers.get(method, handler, lambda: wrap_handler(handler, _observed(method)))


def _observed(method: str) -> Around:
    @asynccontextmanager
    async def observed(context: Context, kind: str) -> AsyncIterator[None]:
        call = _Call(kind, method, context)
        try:
            yield
        except BaseException as error:
            call.finish(error)
            raise
        call.finish(None)

    return observed
