"""TaskContext: what a running task may know and do besides its parameters.

The worker builds one per attempt; tests build one with `TaskContext.for_testing()`, which keeps
the log lines in `ctx.logs` and lets a test cancel with `ctx.cancel()`. Cancellation is
cooperative for sync tasks (they read `ctx.cancelled` or call `ctx.raise_if_cancelled()`);
async tasks also receive asyncio.CancelledError at their next await.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

LogSink = Callable[[str], None]


@dataclass
class TaskContext:
    run_id: str
    attempt: int
    job_id: str
    job_name: str
    # The same for every attempt of a run: hand it to receivers that deduplicate effects.
    idempotency_key: str
    # The run's parameters as given (JSON values), before validation into the task's model.
    params: Mapping[str, Any] = field(default_factory=dict)
    # The values of the secrets the job names (PythonExecutor.secrets), by name. Everything the
    # attempt produces (log lines, output, errors) is masked with them.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    _sink: LogSink = field(default=lambda line: None, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def for_testing(
        cls,
        params: Mapping[str, Any] | None = None,
        *,
        run_id: str = "00000000-0000-0000-0000-000000000001",
        attempt: int = 1,
        job_name: str = "test",
    ) -> TestContext:
        """A context for calling a task directly, without a mesh: its lines land in `.logs`."""
        logs: list[str] = []
        return TestContext(
            run_id=run_id,
            attempt=attempt,
            job_id="00000000-0000-0000-0000-000000000000",
            job_name=job_name,
            idempotency_key=run_id,
            params=dict(params or {}),
            _sink=logs.append,
            logs=logs,
        )

    def log(self, message: str) -> None:
        """One line (or several, split at newlines) to the run's log."""
        for line in str(message).splitlines() or [""]:
            self._sink(line)

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled (or the attempt timed out): stop soon."""
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise asyncio.CancelledError("the run was cancelled")

    def cancel(self) -> None:
        """Mark the attempt cancelled (the worker does it on cancel and timeout)."""
        self._cancelled.set()


@dataclass
class TestContext(TaskContext):
    __test__ = False  # not a pytest test class
    logs: list[str] = field(default_factory=list)
