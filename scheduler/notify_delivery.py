"""The notification delivery loop: posts due deliveries, signed, and records what came of it.

Every scheduler runs one. A batch is claimed with SKIP LOCKED and a lease (taskmesh.db.
notifications), posted concurrently, and its results recorded in one statement, guarded by the
attempt count. Delivery is at least once: a receiver dedupes on the event id.

Each post goes through the egress policy's transport (taskmesh.guarded_http): a channel can
never reach the mesh's own ports, whatever its URL resolves to at that moment. Redirects are not
followed, the whole exchange is bounded by the timeout, at most EXCERPT_BYTES of the answer are
kept, and neither the secret nor the signature is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from taskmesh.db.notifications import NotificationRepository, RecordedResult
from taskmesh.egress import EgressPolicy
from taskmesh.guarded_http import EgressDenied, GuardedTransport, Resolver, resolve
from taskmesh.notify import payloads, retries, signing
from taskmesh.notify.records import ClaimedDelivery
from taskmesh.reconnect import Reconnect
from taskmesh.service_errors import Unavailable

log = logging.getLogger(__name__)

EXCERPT_BYTES = 256
USER_AGENT = "taskmesh-notifications/1"


@dataclass(frozen=True)
class DeliveryConfig:
    batch_size: int = 20
    poll_interval: float = 1.0
    timeout: float = 10.0
    schedule: retries.RetrySchedule = field(default_factory=retries.RetrySchedule)


class WebhookPoster:
    """One signed POST per call, through the egress-guarded transport."""

    def __init__(
        self,
        policy: EgressPolicy,
        timeout: float,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(policy, resolver), follow_redirects=False, trust_env=False
        )
        self._timeout = timeout
        self._clock = clock

    async def post(self, delivery: ClaimedDelivery) -> retries.AttemptResult:
        body = payloads.body(delivery.event, delivery.format)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.SIGNATURE_HEADER: signing.signature_header(delivery.secret, timestamp, body),
            signing.EVENT_ID_HEADER: delivery.event_id,
            signing.EVENT_TYPE_HEADER: delivery.event_type.value,
            signing.ATTEMPT_HEADER: str(delivery.attempts),
        }
        try:
            async with asyncio.timeout(self._timeout):
                return await self._send(delivery.url, body, headers)
        except TimeoutError:
            return retries.AttemptResult(ok=False, error=f"no answer within {self._timeout:g} s")
        except EgressDenied as denied:
            return retries.AttemptResult(ok=False, error=str(denied), retryable=False)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            return retries.AttemptResult(ok=False, error=f"the URL cannot be requested: {error}", retryable=False)
        except httpx.HTTPError as error:
            return retries.AttemptResult(ok=False, error=f"{type(error).__name__}: {error}"[:500])

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> retries.AttemptResult:
        async with self._client.stream(
            "POST", url, content=body, headers=headers, timeout=self._timeout
        ) as response:
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
        result = retries.classify_status(response.status_code)
        text = excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        return retries.AttemptResult(result.ok, result.status_code, result.error, result.retryable, text)

    async def aclose(self) -> None:
        await self._client.aclose()


class NotificationDelivery:
    def __init__(
        self,
        repository: NotificationRepository,
        poster: WebhookPoster,
        config: DeliveryConfig,
        wake: asyncio.Event,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._repository = repository
        self._poster = poster
        self._config = config
        self._wake = wake
        self._draw = draw
        self._reconnect = Reconnect("notification delivery", logger=log)

    @property
    def lease_seconds(self) -> float:
        """Long enough for a whole batch's posts (they run concurrently) and their record."""
        return self._config.timeout * 2 + 5

    async def run_forever(self) -> None:
        while True:
            try:
                delivered = await self.deliver_once()
                self._reconnect.connected()
            except Unavailable as error:
                await self._reconnect.failed(error)
                continue
            if delivered < self._config.batch_size:
                await self._idle()

    async def deliver_once(self) -> int:
        """Claim, post and record one batch; how many deliveries it held."""
        claimed = await self._repository.claim_due(self._config.batch_size, self.lease_seconds)
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._attempt(d) for d in claimed))
        await self._repository.record(results)
        return len(claimed)

    async def _attempt(self, delivery: ClaimedDelivery) -> RecordedResult:
        result = await self._poster.post(delivery)
        decision = retries.decide(result, delivery.attempts, self._config.schedule, self._draw())
        extra = {"event_id": delivery.event_id, "delivery_id": delivery.id, "attempt": delivery.attempts}
        if result.ok:  # one line per webhook would cost as much as the rest of a delivery: DEBUG
            log.debug("notification %s delivered (HTTP %d)", delivery.event_id, result.status_code, extra=extra)
        else:
            log.warning(
                "notification %s attempt %d failed: %s -> %s",
                delivery.event_id,
                delivery.attempts,
                result.error,
                decision.state.value,
                extra=extra,
            )
        return RecordedResult(delivery.id, delivery.attempts, decision, result)

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._config.poll_interval)
