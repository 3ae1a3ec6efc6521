"""Every name shared across processes: queues, exchanges, Redis keys, NOTIFY channels."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    """Names derived from one namespace, so that meshes sharing services stay apart."""

    namespace: str

    # RabbitMQ
    @property
    def work_exchange(self) -> str:
        return f"{self.namespace}.work"

    @property
    def work_queue(self) -> str:
        return f"{self.namespace}.runs"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.runs.dead"

    # PostgreSQL NOTIFY channels (wake-ups only; correctness never depends on them)
    @property
    def outbox_channel(self) -> str:
        return f"{self.namespace}_outbox"

    # Redis
    def job_status_key(self, job_id: str) -> str:
        return f"{self.namespace}:job-status:{job_id}"

    @property
    def watched_runs_key(self) -> str:
        """Sorted set of runs somebody watches (score: when the registration expires)."""
        return f"{self.namespace}:watched-runs"

    def run_events_channel(self, run_id: str) -> str:
        """Pub/sub channel carrying a run's changes and log lines (taskmesh.v1.RunEvent)."""
        return f"{self.namespace}:run-events:{run_id}"


WORK_ROUTING_KEY = "run"
