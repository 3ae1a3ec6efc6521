"""The firing loop's Prometheus metrics (served with the scheduler's others, scheduler.health_and_metrics)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from taskmesh.records import FiredBatch, FireDecision

# From a healthy scheduler's milliseconds to a catch-up after an outage.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, float("inf"))


class FiringMetrics:
    def __init__(self, scheduler_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._scheduler_id = scheduler_id
        self._lag = Histogram(
            "taskmesh_schedule_fire_lag_seconds",
            "Run creation time minus nominal slot time, per fired schedule slot",
            ["scheduler"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        ).labels(scheduler_id)
        self._skipped = Counter(
            "taskmesh_schedule_skipped_slots",
            "Schedule slots not fired, by reason (misfire policy, overlap policy)",
            ["scheduler", "reason"],
            registry=self.registry,
        )
        # Non-zero means two decisions claimed the same slot: the unique constraint kept one run.
        self._conflicts = Counter(
            "taskmesh_schedule_slot_conflicts",
            "Slots a firing decision found already holding a run",
            ["scheduler"],
            registry=self.registry,
        ).labels(scheduler_id)

    def record(self, decisions: Sequence[FireDecision], fired: FiredBatch) -> None:
        for run in fired.created:
            if run.slot_time is not None:
                self._lag.observe((run.queue_time - run.slot_time).total_seconds())
        for decision in decisions:
            for skip in decision.skipped:
                self._skipped.labels(self._scheduler_id, skip.reason.value).inc()
        if fired.conflicts:
            self._conflicts.inc(fired.conflicts)
