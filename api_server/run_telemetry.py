"""What the api_server sees, turned into metrics and log lines. api_server.main builds one
CacheStats and one CancelObserver and hands them to the domain code (api_server.jobs,
api_server.runs) and to the metrics endpoint (api_server.health_and_metrics).

- GetJobStatus lookups in the Redis status cache by result, and the hit ratio since start;
- runs cancelled here (queued or waiting to retry: they end at once) by terminal state, and a
  log line per cancellation with job, run and attempt;
- runs a trigger created ended (on_limit SKIP: their key was full), counted and logged alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Literal

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from taskmesh.metrics import RUNS_FINISHED, labelled
from taskmesh.records import RunRecord
from taskmesh.states import RunState

log = logging.getLogger(__name__)

CacheResult = Literal["hit", "miss", "error"]

CACHE_LOOKUPS = Counter(
    "taskmesh_status_cache_lookups",
    "GetJobStatus lookups in the Redis status cache, by result (error: Redis out of reach)",
    ["result"],
)


class CacheStats:
    """Counts lookups; the hit ratio is a gauge computed at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[CacheResult, int] = {"hit": 0, "miss": 0, "error": 0}

    def record(self, result: CacheResult) -> None:
        self.counts[result] += 1
        labelled(CACHE_LOOKUPS, result).inc()

    def hit_ratio(self) -> float:
        total = sum(self.counts.values())
        return self.counts["hit"] / total if total else math.nan

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "taskmesh_status_cache_hit_ratio",
            "Share of GetJobStatus lookups answered by the cache since the process started (NaN before any)",
            self.hit_ratio(),
        )


class CancelObserver:
    """Counts and logs the runs a cancel changed and those a trigger skipped (api_server.runs.RunsObserver)."""

    def cancelled(self, runs: Sequence[RunRecord]) -> None:
        for run in runs:
            extra = {"job_id": run.job_id, "run_id": run.id, "attempt": run.attempt}
            if run.state == RunState.CANCELLED:
                # Nothing executed it since the last attempt (if any): its executor is not known here.
                RUNS_FINISHED.labels(run.state.value, "none" if not run.attempts else "unknown").inc()
                log.info("run cancelled", extra=extra)
            else:
                log.info(
                    "cancel requested: the worker executing attempt %d is told to stop", run.attempt, extra=extra
                )

    def skipped(self, runs: Sequence[RunRecord]) -> None:
        for run in runs:
            RUNS_FINISHED.labels(run.state.value, "none").inc()
            reason = (run.error or {}).get("message", "")
            log.info(
                "run skipped: %s", reason, extra={"job_id": run.job_id, "run_id": run.id, "attempt": run.attempt}
            )
