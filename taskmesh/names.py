"""Every name shared across processes and prefixed by the namespace: queues, exchanges,
Redis keys. (NOTIFY channels are the database's own: taskmesh.db.outbox, runs, schedules.)"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Executor kinds, as taskmesh.v1.Executor's `kind` oneof names them. The relay publishes each
# work unit with its run's kind as routing key.
EXECUTOR_KINDS = ("noop", "sleep", "http", "shell")
# Kinds a worker may not offer (shell is off unless TASKMESH_WORKER_SHELL_ENABLED): each has a
# work queue of its own, consumed only by workers that run it. The other kinds, which every
# worker runs, share the main work queue.
OPTIONAL_EXECUTORS = ("shell",)
# The main queue's own key: work units of unknown kind (their run is gone) go there and are
# dropped at claim.
WORK_ROUTING_KEY = "run"


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
        """The main work queue: every worker consumes it."""
        return f"{self.namespace}.runs"

    def capability_queue(self, kind: str) -> str:
        return f"{self.namespace}.runs.{kind}"

    def queue_for(self, kind: str) -> str:
        """The work queue of an executor kind's work units."""
        return self.capability_queue(kind) if kind in OPTIONAL_EXECUTORS else self.work_queue

    def work_queues(self, kinds: Iterable[str] = EXECUTOR_KINDS) -> list[str]:
        """The queues a worker running these executor kinds consumes (default: every work queue)."""
        offered = set(kinds)
        return [self.work_queue, *(self.capability_queue(k) for k in OPTIONAL_EXECUTORS if k in offered)]

    def work_bindings(self) -> dict[str, list[str]]:
        """Each work queue with the routing keys bound to it on the work exchange."""
        bindings: dict[str, list[str]] = {queue: [] for queue in self.work_queues()}
        bindings[self.work_queue].append(WORK_ROUTING_KEY)
        for kind in EXECUTOR_KINDS:
            bindings[self.queue_for(kind)].append(kind)
        return bindings

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


def routing_key(kind: str | None) -> str:
    return kind if kind in EXECUTOR_KINDS else WORK_ROUTING_KEY
