"""Where a Python task's print() and logging go: to its own run's log.

Tasks run side by side on the worker's loop and in its thread pool, so output cannot be
redirected globally: sys.stdout and sys.stderr are replaced once by proxies that write to the
sink of the task whose context (a contextvar, copied into the task's asyncio task or thread) is
current, and to the real stream otherwise. A logging handler on the root logger does the same
for records emitted inside a task, except the worker's own loggers (worker.*, taskmesh.* other
than taskmesh.tasks and taskmesh.examples), whose lines are the worker's business.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

Sink = Callable[[str], None]
MAX_PENDING_CHARS = 64 * 1024  # a line longer than this is cut into pieces

current_sink: contextvars.ContextVar[_LineBuffer | None] = contextvars.ContextVar("task_sink", default=None)
_installed = threading.Lock()
_done = False
WORKER_LOGGERS = ("worker", "taskmesh", "scheduler", "api_server", "pika", "asyncio", "grpc")


class _LineBuffer:
    """Whole lines to the sink; a partial line waits for its end (or for flush)."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            if len(self._pending) > MAX_PENDING_CHARS:
                lines.append(self._pending)
                self._pending = ""
        for line in lines:
            self._sink(line)

    def flush(self) -> None:
        with self._lock:
            rest, self._pending = self._pending, ""
        if rest:
            self._sink(rest)


class _StreamProxy:
    def __init__(self, real: TextIO) -> None:
        self._real = real

    def write(self, text: str) -> int:
        buffer = current_sink.get()
        if buffer is None:
            return self._real.write(text)
        buffer.write(text)
        return len(text)

    def flush(self) -> None:
        if current_sink.get() is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the real stream's
        return getattr(self._real, name)


class _TaskLogHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        buffer = current_sink.get()
        if buffer is None or _is_worker_logger(record.name):
            return
        try:
            buffer.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


TASK_LOGGERS = ("taskmesh.tasks", "taskmesh.examples")  # user code inside the taskmesh package


def _is_worker_logger(name: str) -> bool:
    if any(name == prefix or name.startswith(prefix + ".") for prefix in TASK_LOGGERS):
        return False
    return any(name == prefix or name.startswith(prefix + ".") for prefix in WORKER_LOGGERS)


def install() -> None:
    """Put the proxies and the handler in place (idempotent, cheap: called before each task,
    since something else, a test runner for one, may have replaced sys.stdout since)."""
    global _done
    if isinstance(sys.stdout, _StreamProxy) and isinstance(sys.stderr, _StreamProxy) and _done:
        return
    with _installed:
        if not isinstance(sys.stdout, _StreamProxy):
            sys.stdout = _StreamProxy(sys.stdout)
        if not isinstance(sys.stderr, _StreamProxy):
            sys.stderr = _StreamProxy(sys.stderr)
        if not _done:
            logging.getLogger().addHandler(_TaskLogHandler())
            _done = True


def capturing(sink: Sink) -> _LineBuffer:
    """A line buffer for one attempt; set it as `current_sink` in the task's context."""
    return _LineBuffer(sink)
