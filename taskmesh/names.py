"""Every name shared across processes and prefixed by the namespace: queues, exchanges,
Redis keys. (NOTIFY channels are the database's own: taskmesh.db.outbox, runs, schedules.)"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Executor kinds, as taskmesh.v1.Executor's `kind` oneof names them.
EXECUTOR_KINDS = ("noop", "sleep", "http", "shell", "python")
# Kinds a worker may not offer (shell is off unless TASKMESH_WORKER_SHELL_ENABLED): each has a
# work queue of its own per pool, consumed only by workers that run it. The kinds every worker
# runs (noop, sleep, http) share their pool's main work queue. Python runs go to a queue per
# (pool, task): a worker consumes the queues of the tasks its registry has, so a task it does
# not know never reaches it (no reject-and-requeue loop during a rolling deploy).
OPTIONAL_EXECUTORS = ("shell",)
# The default pool's main queue's old key: work units of unknown kind (their run is gone) go
# there and are dropped at claim.
WORK_ROUTING_KEY = "run"

# Pools and Python task names become parts of RabbitMQ queue names (at most 255 bytes in all).
DEFAULT_POOL = "default"
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def valid_pool_name(name: str) -> bool:
    return POOL_NAME.fullmatch(name) is not None


def valid_task_name(name: str) -> bool:
    return TASK_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Route:
    """Where a run's work units go: its pool, and what a worker needs to run it."""

    pool: str = DEFAULT_POOL
    kind: str | None = None  # None: unknown (the run is gone)
    task: str | None = None  # python runs: the task name


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
        """The default pool's main work queue."""
        return f"{self.namespace}.runs"

    def pool_queue(self, pool: str = DEFAULT_POOL) -> str:
        """A pool's main work queue (noop, sleep, http): every worker of the pool consumes it."""
        return self.work_queue if pool == DEFAULT_POOL else f"{self.namespace}.pool.{pool}.runs"

    def capability_queue(self, kind: str, pool: str = DEFAULT_POOL) -> str:
        return f"{self.pool_queue(pool)}.{kind}"

    def task_queue(self, task: str, pool: str = DEFAULT_POOL) -> str:
        return f"{self.pool_queue(pool)}.task.{task}"

    def queue_for(self, kind: str, pool: str = DEFAULT_POOL, task: str | None = None) -> str:
        """The work queue of a run's work units (also its routing key on the work exchange)."""
        if kind == "python" and task:
            return self.task_queue(task, pool)
        return self.capability_queue(kind, pool) if kind in OPTIONAL_EXECUTORS else self.pool_queue(pool)

    def route_queue(self, route: Route) -> str:
        if route.kind is None:
            return self.work_queue
        return self.queue_for(route.kind, route.pool, route.task)

    def work_queues(
        self,
        kinds: Iterable[str] = EXECUTOR_KINDS,
        pools: Iterable[str] = (DEFAULT_POOL,),
        tasks: Iterable[str] = (),
    ) -> list[str]:
        """The queues a worker of these pools, executor kinds and Python tasks consumes
        (default: the default pool's main and capability queues)."""
        offered = set(kinds)
        queues: list[str] = []
        for pool in pools:
            queues.append(self.pool_queue(pool))
            queues.extend(self.capability_queue(k, pool) for k in OPTIONAL_EXECUTORS if k in offered)
            if "python" in offered:
                queues.extend(self.task_queue(task, pool) for task in sorted(set(tasks)))
        return queues

    def work_bindings(self) -> dict[str, list[str]]:
        """The default pool's fixed queues with the routing keys bound to them: each queue is
        bound by its own name (what the relay publishes with) and by the older kind keys."""
        bindings: dict[str, list[str]] = {queue: [queue] for queue in self.work_queues(OPTIONAL_EXECUTORS)}
        bindings[self.work_queue].append(WORK_ROUTING_KEY)
        for kind in EXECUTOR_KINDS:
            if kind != "python":
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
