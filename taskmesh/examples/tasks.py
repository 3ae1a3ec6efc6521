"""An example task registry: `taskmesh-worker --tasks taskmesh.examples.tasks:tasks` (what
`make up` starts its workers with). See the README's "Python tasks and worker pools"."""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import BaseModel, Field

from taskmesh.tasks import NonRetryable, TaskContext, TaskRegistry

tasks = TaskRegistry()
log = logging.getLogger(__name__)


class Greeting(BaseModel):
    name: str = Field(default="world", min_length=1, max_length=100)
    times: int = Field(default=1, ge=1, le=10)


@tasks.task("examples.greet")
async def greet(params: Greeting, ctx: TaskContext) -> dict[str, object]:
    """Says hello `times` times, to the run's log, and returns what it said."""
    lines = [f"hello, {params.name}!" for _ in range(params.times)]
    for line in lines:
        print(line)
    log.info("greeted %s on attempt %d", params.name, ctx.attempt)
    return {"greeting": lines[0], "count": len(lines)}


@tasks.task("examples.noop")
async def noop() -> None:
    """Does nothing: the Python-task benchmark's task."""


class Sum(BaseModel):
    numbers: list[float] = Field(max_length=10_000)


@tasks.task("examples.sum")
def total(params: Sum, ctx: TaskContext) -> dict[str, float]:
    """A sync task (it runs in the worker's thread pool)."""
    ctx.log(f"adding {len(params.numbers)} numbers")
    return {"sum": sum(params.numbers)}


class Flaky(BaseModel):
    fail_attempts: int = Field(default=1, ge=0, le=10)
    permanent: bool = False


@tasks.task("examples.flaky")
def flaky(params: Flaky, ctx: TaskContext) -> str:
    """Fails its first `fail_attempts` attempts (retried by the job's policy), or for good."""
    if params.permanent:
        raise NonRetryable("this input can never succeed")
    if ctx.attempt <= params.fail_attempts:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return f"succeeded on attempt {ctx.attempt}"


class Wait(BaseModel):
    seconds: float = Field(default=60, ge=0, le=3600)


@tasks.task("examples.wait")
async def wait(params: Wait, ctx: TaskContext) -> str:
    """Sleeps on the loop: cancel and timeout stop it at once."""
    await asyncio.sleep(params.seconds)
    return "waited"


class Nap(BaseModel):
    seconds: float = Field(default=3, ge=0, le=3600)


@tasks.task("examples.sleep")
async def nap(params: Nap, ctx: TaskContext) -> dict[str, object]:
    """Sleeps a few seconds (3 by default) and says which attempt finished."""
    print(f"attempt {ctx.attempt} sleeps {params.seconds:g}s", flush=True)
    await asyncio.sleep(params.seconds)
    return {"slept": params.seconds, "attempt": ctx.attempt}


@tasks.task("examples.wait_sync")
def wait_sync(params: Wait, ctx: TaskContext) -> str:
    """Sleeps in a thread, checking ctx.cancelled: cancel stops it cooperatively."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            return "stopped early"
        time.sleep(0.05)
    return "waited"


@tasks.task("examples.spin", isolated=True)
def spin(params: Wait) -> str:
    """Busy-loops in a child process, ignoring cancellation: only a kill stops it."""
    print("spinning", flush=True)
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        pass
    return "spun"
