"""Task registries the pool tests start workers with (the worker imports this module: the
tests put the repository on its PYTHONPATH). `full` is the newer release of the code, `older`
the one some workers still run during a rolling deploy: it lacks `deploy.new`."""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel

from taskmesh.tasks import NonRetryable, TaskContext, TaskRegistry

full = TaskRegistry()
older = TaskRegistry()


def _both(name: str, **options: bool):  # type: ignore[no-untyped-def]
    def register(function):  # type: ignore[no-untyped-def]
        full.task(name, **options)(function)
        older.task(name, **options)(function)
        return function

    return register


@_both("t.hello")
async def hello(ctx: TaskContext) -> dict[str, object]:
    print(f"hello from attempt {ctx.attempt}")
    return {"run": ctx.run_id, "attempt": ctx.attempt}


@_both("t.flaky")
def flaky(ctx: TaskContext) -> str:
    """Fails its first attempt (retryable), succeeds on the second."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return "second attempt"


@_both("t.never")
def never() -> None:
    raise NonRetryable("this can never work")


@_both("t.wait_async")
async def wait_async(ctx: TaskContext) -> str:
    print("waiting on the loop", flush=True)
    await asyncio.sleep(120)
    return "waited"


@_both("t.wait_sync")
def wait_sync(ctx: TaskContext) -> str:
    print("waiting in a thread", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.02)
    return "stopped"


@_both("t.spin", isolated=True)
def spin() -> None:
    print(f"pid {os.getpid()}", flush=True)
    while True:
        pass


class Double(BaseModel):
    n: int


@_both("t.double")
def double(params: Double) -> dict[str, int]:
    return {"doubled": params.n * 2}


@full.task("deploy.new")
def new_task(ctx: TaskContext) -> dict[str, object]:
    return {"ran": ctx.run_id}


@full.task("t.uses_secret")
def uses_secret(ctx: TaskContext) -> dict[str, str]:
    """Prints, logs and returns the secret it is given: every trace must come back masked."""
    token = ctx.secrets["API_TOKEN"]
    print("printed", token)
    ctx.log(f"logged {token}")
    return {"token": token, "length": str(len(token))}


@full.task("t.uses_secret_isolated", isolated=True)
def uses_secret_isolated(ctx: TaskContext) -> dict[str, str]:
    token = ctx.secrets["API_TOKEN"]
    print("printed", token)
    return {"token": token}
