"""The child process of an isolated Python task: loads the registry, runs one attempt, writes
its result (JSON: ok and value, or type, message, traceback, retryable) to the file the worker
named, and exits. Its stdout and stderr (print, logging, ctx.log) are the run's log.

It starts with a minimal environment (worker.executors.python.child_environment): the worker's
settings, credentials and session token never reach it."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from taskmesh.tasks import NonRetryable, ParameterError, TaskContext, load_registry
from taskmesh.tasks.results import json_value

MAX_TRACEBACK_CHARS = 4096


def main() -> None:
    request = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    result = run(request)
    Path(request["result_path"]).write_text(json.dumps(result))


def run(request: dict[str, Any]) -> dict[str, Any]:
    try:
        task = load_registry(request["registry"]).get(request["task"])
        if task is None:
            raise NonRetryable(f"task {request['task']!r} is not in {request['registry']}")
        ctx = TaskContext(params=request["params"], secrets=request["secrets"], _sink=_print, **request["context"])
        kwargs = task.arguments(ctx.params, ctx)
        value = asyncio.run(task.function(**kwargs)) if task.is_async else task.function(**kwargs)
        return {"ok": True, "value": json_value(value)}
    except Exception as error:
        kind = type(error).__qualname__
        frames = "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]
        print(frames, end="", flush=True)
        message = f"{kind}: {error}" if str(error) else kind
        return {
            "ok": False,
            "type": kind,
            "message": str(error) if isinstance(error, ParameterError) else message,
            "traceback": frames,
            "retryable": not isinstance(error, NonRetryable),
        }


def _print(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    main()
