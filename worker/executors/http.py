"""http: one request; any 2xx is success. Status code and a body excerpt are kept either way.

The request carries X-Taskmesh-Run-Id and X-Taskmesh-Attempt, so that the receiver can make
its effect idempotent (delivery is at least once)."""

from __future__ import annotations

import time

import httpx

from taskmesh.v1 import job_pb2, run_pb2
from worker.executors.base import (
    EXCERPT_BYTES,
    ExecutionContext,
    ExecutionOutcome,
    failed,
    head_excerpt,
    succeeded,
)
from worker.executors.lease_guard import lease_guard

DEFAULT_TIMEOUT = 30.0
# Statuses worth retrying: the server may answer differently later.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpExecutor:
    kind = "http"

    def __init__(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=True)

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        http = spec.http
        method = http.method.upper() or "GET"
        timeout = http.timeout.ToTimedelta().total_seconds() if http.HasField("timeout") else DEFAULT_TIMEOUT
        headers = {
            **dict(http.headers),
            "X-Taskmesh-Run-Id": context.run_id,
            "X-Taskmesh-Attempt": str(context.attempt),
        }
        context.log(f"{method} {http.url}")
        started = time.monotonic()
        try:
            async with self._client.stream(
                method,
                http.url,
                headers=headers,
                content=http.body.encode() if http.body else None,
                timeout=timeout,
                extensions=lease_guard(context),
            ) as response:
                body = await _read_head(response)
        except httpx.TimeoutException:
            context.log(f"timed out after {timeout:g}s")
            return failed(f"request timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except httpx.HTTPError as error:
            context.log(f"failed: {error.__class__.__name__}: {error}")
            return failed(f"request failed: {error.__class__.__name__}: {error}")
        elapsed_ms = (time.monotonic() - started) * 1000
        context.log(f"HTTP {response.status_code} {response.reason_phrase} in {elapsed_ms:.0f} ms")
        result = run_pb2.RunResult(
            http=run_pb2.HttpResult(status_code=response.status_code, body_excerpt=head_excerpt(body))
        )
        if 200 <= response.status_code < 300:
            return succeeded(result)
        return failed(
            f"HTTP {response.status_code}",
            retryable=response.status_code in RETRYABLE_STATUSES or response.status_code >= 500,
            result=result,
        )

    async def close(self) -> None:
        await self._client.aclose()


async def _read_head(response: httpx.Response) -> bytes:
    """The first EXCERPT_BYTES of the body; the rest is not downloaded."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= EXCERPT_BYTES:
            break
    return body
