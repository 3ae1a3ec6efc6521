"""Structured logging: one JSON object per line, carrying the process and any run context.

Run context (job_id, run_id, attempt, ...) comes from `extra={...}` on the log call; the
request id of the RPC being served comes from a contextvar that the servers' telemetry
interceptor sets from the `x-request-id` metadata Envoy adds to every call it forwards.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes that log calls may attach with extra={...}; they become JSON fields.
CONTEXT_FIELDS = ("job_id", "run_id", "attempt", "worker_id", "request_id", "method", "code")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of a record; the current request id unless the call named one."""
    found = {field: value for field in CONTEXT_FIELDS if (value := getattr(record, field, None)) is not None}
    if "request_id" not in found and (current := request_id.get()) is not None:
        found["request_id"] = current
    return found


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self._process = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "message": record.getMessage(),
            **context_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For a terminal (`make up`): the message, then the context as key=value pairs."""

    def __init__(self, process_name: str) -> None:
        super().__init__(f"%(asctime)s {process_name} %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in context_of(record).items())
        if not context:
            return line
        head, newline, tail = line.partition("\n")  # keep a traceback below the first line
        return f"{head} [{context}]{newline}{tail}"


def configure_logging(process_name: str, level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process_name) if as_json else TextFormatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "alembic.runtime.migration", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
