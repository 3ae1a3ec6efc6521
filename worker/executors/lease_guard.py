"""The http executor's lease check right before each request goes out (every redirect hop
too), through httpcore's trace extension: a request whose lease expired while it connected or
waited for a redirect is never sent."""

from __future__ import annotations

from typing import Any

from worker.executors.base import ExecutionContext

SENDING_EVENTS = ("http11.send_request_headers.started", "http2.send_request_headers.started")


def lease_guard(context: ExecutionContext) -> dict[str, Any]:
    """Request extensions for httpx: raises LeaseExpired instead of sending a request late."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event in SENDING_EVENTS:
            context.ensure_lease()

    return {"trace": trace}
