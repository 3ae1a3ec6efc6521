"""The admission loop of flow control: every scheduler runs one (README "Flow control").

A pass (taskmesh.db.admission) is woken by NOTIFY (a run to admit arrived, a keyed run ended)
and runs anyway every `poll_interval`, more often while a rate-limited run waits for its token
(tokens come with time). Passes of all schedulers are serialized by the database; a lost
notification delays admission by at most one interval and never loses a run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from taskmesh.aio import wait_event
from taskmesh.cache.status import CacheWriter
from taskmesh.db.admission import RENDER_BATCH, AdmissionRepository, PassResult
from taskmesh.reconnect import Reconnect
from taskmesh.service_errors import Unavailable

log = logging.getLogger(__name__)

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, float("inf"))
REASONS = ("CONCURRENCY_LIMIT", "RATE_LIMITED")
GAUGE_EVERY_SECONDS = 2.0
PRUNE_EVERY_SECONDS = 600.0


class AdmissionMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.wait = Histogram(
            "taskmesh_admission_wait_seconds",
            "Admission latency: run creation (or retry) to admission, for runs with a concurrency or rate limit",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.pass_seconds = Histogram(
            "taskmesh_admission_pass_seconds",
            "Duration of an admission pass (lock, render, policies, admit)",
            registry=self.registry,
        )
        self.waiting = Gauge(
            "taskmesh_runs_waiting",
            "QUEUED runs waiting for admission, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.not_admitted = Counter(
            "taskmesh_admission_ended_runs",
            "Runs admission ended (on_limit SKIP, keys that cannot render) or cancelled (CANCEL_OLDEST)",
            registry=self.registry,
        )

    def record(self, result: PassResult, seconds: float) -> None:
        self.pass_seconds.observe(seconds)
        for wait in result.wait_seconds:
            self.wait.observe(max(0.0, wait))
        if result.ended:
            self.not_admitted.inc(len(result.ended))

    def waiting_now(self, counts: dict[str, int]) -> None:
        for reason in REASONS:
            self.waiting.labels(reason).set(counts.get(reason, 0))


class AdmissionLoop:
    def __init__(
        self,
        repository: AdmissionRepository,
        cache_writer: CacheWriter,
        wake: asyncio.Event,
        metrics: AdmissionMetrics,
        *,
        batch_size: int,
        poll_interval: float,
        rate_poll_interval: float,
    ) -> None:
        self._repository = repository
        self._cache_writer = cache_writer
        self._wake = wake
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._rate_poll_interval = rate_poll_interval
        self._reconnect = Reconnect("admission", logger=log)
        self._idle = False

    async def run_forever(self) -> None:
        next_gauge = next_prune = 0.0
        while True:
            timeout = self._poll_interval
            try:
                self._wake.clear()
                await self.admit_all()
                if not self._idle and await self._repository.rate_limited_waiting():
                    timeout = self._rate_poll_interval
                now = time.monotonic()
                if now >= next_gauge:
                    next_gauge = now + GAUGE_EVERY_SECONDS
                    self._metrics.waiting_now(await self._repository.waiting_by_reason())
                if now >= next_prune:
                    next_prune = now + PRUNE_EVERY_SECONDS
                    await self._repository.prune_grants()
                self._reconnect.connected()
            except Unavailable as error:
                await self._reconnect.failed(error)
                continue
            await wait_event(self._wake, timeout)

    async def admit_all(self) -> int:
        """Passes until one admits less than a batch; returns the runs admitted."""
        admitted = 0
        while True:
            started = time.monotonic()
            result = await self._repository.admit(self._batch_size)
            if not result.idle:
                self._metrics.record(result, time.monotonic() - started)
            changed = result.admitted + result.ended
            if changed:
                self._cache_writer.enqueue(changed)
            admitted += len(result.admitted)
            if len(result.admitted) < self._batch_size and result.rendered < RENDER_BATCH:
                self._idle = result.idle  # nothing awaits admission, so no rate-limited run either
                return admitted
