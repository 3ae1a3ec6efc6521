"""Why a QUEUED run waits: work is routed by pool and capability (taskmesh.names), so a run that
no connected worker can take waits, visibly, until one that can connects.

The reason starts with a code, then ": " and a detail:
- NO_WORKER_FOR_POOL: no connected worker serves the run's pool (or those that do cannot reach
  RabbitMQ: their consumers are down);
- NO_WORKER_FOR_EXECUTOR: workers serve the pool, none runs the executor kind (shell);
- NO_WORKER_FOR_TASK: workers serve the pool, none has the Python task in its registry.

The api_server's health monitor reads the live worker sessions from PostgreSQL (what every
scheduler's workers registered, alike for any number of api_servers); a roster older than
`max_age` tells nothing, and then no reason is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from taskmesh.names import DEFAULT_POOL, Route
from taskmesh.records import RunRecord, WorkerProfile
from taskmesh.states import RunState

NO_WORKER_FOR_POOL = "NO_WORKER_FOR_POOL"
NO_WORKER_FOR_EXECUTOR = "NO_WORKER_FOR_EXECUTOR"
NO_WORKER_FOR_TASK = "NO_WORKER_FOR_TASK"


class WorkerCapacity:
    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._workers: tuple[WorkerProfile, ...] = ()
        self._seen_at = float("-inf")
        self._reasons: dict[Route, str] = {}  # for the roster seen last (every run of a route alike)

    def observe(self, workers: Sequence[WorkerProfile]) -> None:
        self._workers = tuple(workers)
        self._seen_at = time.monotonic()
        self._reasons = {}

    def reason(self, run: RunRecord) -> str:
        if run.state != RunState.QUEUED or run.executor_kind is None:
            return ""
        return self.reason_for(Route(run.pool, run.executor_kind, run.task))

    def reason_for(self, route: Route) -> str:
        if time.monotonic() - self._seen_at > self._max_age:
            return ""
        reason = self._reasons.get(route)
        if reason is None:
            reason = self._reasons[route] = waiting_reason(route, self._workers)
        return reason


def waiting_reason(route: Route, workers: Sequence[WorkerProfile]) -> str:
    """Why a QUEUED run of this route waits, given the connected workers ("" if one can take it)."""
    serving = [w for w in workers if route.pool in w.pools]
    pool_workers = [w for w in serving if w.consuming]
    where = "" if route.pool == DEFAULT_POOL else f" of pool {route.pool}"
    if not pool_workers:
        if serving:  # connected, but not taking work: their broker connection is down
            return f"{NO_WORKER_FOR_POOL}: the workers of pool {route.pool} cannot reach RabbitMQ"
        return f"{NO_WORKER_FOR_POOL}: no connected worker serves pool {route.pool}"
    if route.kind is None:
        return ""
    runners = [w for w in pool_workers if route.kind in w.executors]
    if route.kind == "python" and route.task:
        if not any(route.task in w.tasks for w in runners):
            return f"{NO_WORKER_FOR_TASK}: no connected worker{where} has task {route.task}"
        return ""
    if not runners:
        return f"{NO_WORKER_FOR_EXECUTOR}: no connected worker{where} can run {route.kind}"
    return ""
