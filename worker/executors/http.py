"""http: one request; any 2xx is success. Status code and a body excerpt are kept either way.

The request carries X-Taskmesh-Run-Id and X-Taskmesh-Attempt, and the standard Idempotency-Key
header (IETF httpapi draft), the same for every attempt of a run (the run id unless the job's
idempotency_key template says otherwise; none when disable_idempotency_key; a job header of the
same name wins), so that the receiver can recognise a retried request (delivery is at least once).

A 2xx or error response whose Content-Type is JSON (application/json, or +json) becomes the
attempt's output when its body parses (unless discard_output); a JSON body over MAX_OUTPUT_BYTES
fails the attempt for good. The spec arrives rendered (worker.layers.render).

Every connection, each redirect hop's included, obeys the egress policy (guarded.py); a denied
one fails the attempt for good, naming the rule. Redirects are followed here, at most
MAX_REDIRECTS: a hop to another origin carries none of the job's own headers. The timeout bounds
the whole exchange (connect, redirects, headers and the body excerpt), not each read."""

from __future__ import annotations

import asyncio
import json
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from taskmesh.egress import EgressPolicy
from taskmesh.limits import MAX_OUTPUT_BYTES
from taskmesh.v1 import job_pb2, run_pb2
from worker.executors.base import (
    EXCERPT_BYTES,
    NO_OUTPUT,
    ExecutionContext,
    ExecutionOutcome,
    JsonValue,
    failed,
    head_excerpt,
    succeeded,
)
from worker.executors.guarded import EgressDenied, GuardedTransport, Resolver, resolve
from worker.executors.lease_guard import lease_guard

DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 10
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses worth retrying: the server may answer differently later.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TooManyRedirects(Exception):
    pass


class HttpExecutor:
    kind = "http"

    def __init__(self, egress: EgressPolicy, resolver: Resolver = resolve) -> None:
        # No cookie jar shared between jobs, no proxy or .netrc from the environment.
        no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(egress, resolver),
            follow_redirects=False,
            trust_env=False,
            cookies=no_cookies,
        )

    async def execute(self, spec: job_pb2.Executor, context: ExecutionContext) -> ExecutionOutcome:
        http = spec.http
        method = http.method.upper() or "GET"
        timeout = http.timeout.ToTimedelta().total_seconds() if http.HasField("timeout") else DEFAULT_TIMEOUT
        identity = {"X-Taskmesh-Run-Id": context.run_id, "X-Taskmesh-Attempt": str(context.attempt)}
        headers = dict(http.headers)
        if not http.disable_idempotency_key and not any(n.lower() == "idempotency-key" for n in headers):
            identity[IDEMPOTENCY_HEADER] = http.idempotency_key or context.idempotency_key
        request = self._client.build_request(
            method,
            http.url,
            headers={**headers, **identity},
            content=http.body.encode() if http.body else None,
            timeout=timeout,
            extensions=lease_guard(context),
        )
        context.log(f"{method} {http.url}")
        started = time.monotonic()
        wants_output = not http.discard_output and method != "HEAD"
        try:
            async with asyncio.timeout(timeout):
                response, body = await self._exchange(request, identity, context, wants_output)
        except TimeoutError:
            context.log(f"timed out after {timeout:g}s")
            return failed(f"request timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except httpx.TimeoutException:
            context.log(f"timed out after {timeout:g}s")
            return failed(f"request timed out after {timeout:g}s", kind=run_pb2.RunError.TIMEOUT)
        except EgressDenied as denied:
            context.log(str(denied))
            return failed(str(denied), retryable=False)
        except TooManyRedirects as error:
            context.log(str(error))
            return failed(str(error), retryable=False)
        except httpx.HTTPError as error:
            context.log(f"failed: {error.__class__.__name__}: {error}")
            return failed(f"request failed: {error.__class__.__name__}: {error}")
        elapsed_ms = (time.monotonic() - started) * 1000
        context.log(f"HTTP {response.status_code} {response.reason_phrase} in {elapsed_ms:.0f} ms")
        result = run_pb2.RunResult(
            http=run_pb2.HttpResult(status_code=response.status_code, body_excerpt=head_excerpt(body))
        )
        output: JsonValue = NO_OUTPUT
        if wants_output and is_json(response.headers.get("content-type", "")):
            if len(body) > MAX_OUTPUT_BYTES:
                return failed(
                    f"the JSON response body is over {MAX_OUTPUT_BYTES} bytes, the most a run's output may be "
                    "(set discard_output to ignore it)",
                    retryable=False,
                    result=result,
                )
            output = _parsed(body, context)
        if 200 <= response.status_code < 300:
            return succeeded(result, output=output)
        return failed(
            f"HTTP {response.status_code}",
            retryable=response.status_code in RETRYABLE_STATUSES or response.status_code >= 500,
            result=result,
            output=output,
        )

    async def _exchange(
        self, request: httpx.Request, identity: dict[str, str], context: ExecutionContext, wants_output: bool
    ) -> tuple[httpx.Response, bytes]:
        """Send `request` and follow its redirects; the final response and its body's head (up
        to one byte over MAX_OUTPUT_BYTES when it is JSON and wanted as output)."""
        first = request.url
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._client.send(request, stream=True)
            try:
                if response.next_request is None:
                    json_body = wants_output and is_json(response.headers.get("content-type", ""))
                    return response, await _read_head(
                        response, MAX_OUTPUT_BYTES + 1 if json_body else EXCERPT_BYTES
                    )
                following = response.next_request
            finally:
                await response.aclose()
            context.log(f"HTTP {response.status_code} redirect to {following.url}")
            request = (
                following if keeps_headers(first, following.url) else await self._stripped(following, identity)
            )
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")

    async def _stripped(self, request: httpx.Request, identity: dict[str, str]) -> httpx.Request:
        """The same hop without the job's own headers (they are meant for the job's origin)."""
        body = await request.aread()
        return self._client.build_request(
            request.method, request.url, headers=identity, content=body or None, extensions=request.extensions
        )

    async def close(self) -> None:
        await self._client.aclose()


def keeps_headers(first: httpx.URL, hop: httpx.URL) -> bool:
    """Does a redirect hop still go to the job's origin (or only upgrade it to https)?"""
    if hop.host != first.host:
        return False
    if (hop.scheme, hop.port) == (first.scheme, first.port):
        return True
    return (
        first.scheme == "http" and first.port in (None, 80) and hop.scheme == "https" and hop.port in (None, 443)
    )


async def _read_head(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of the body; the rest is not downloaded."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def is_json(content_type: str) -> bool:
    """application/json, or any media type with a +json suffix (application/problem+json)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _parsed(body: bytes, context: ExecutionContext) -> JsonValue:
    """The body as a JSON value; NO_OUTPUT (and a log line) when it does not parse."""
    if not body.strip():
        return NO_OUTPUT
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError included
        context.log(f"the JSON response body does not parse ({error}): no output")
        return NO_OUTPUT
