"""Taskmesh with a large history: the same figures on an empty and on a seeded database.

  python -m bench.scale seed --scale 1       # 100k jobs, 10M runs, 20M log lines (COPY)
  python -m bench.scale measure --scale 1    # empty vs seeded, side by side
  python -m bench.scale measure --scale 0.01 --purge-seconds 20   # a quick look

TASKMESH_BENCH_DATABASE names the seeded database, so that it is seeded once and reused
(`measure` seeds it first when it holds no seed; it is never dropped: drop it yourself). The
empty database is a fresh one per run, dropped afterwards.

Each mesh (api_server, scheduler, 2 workers) runs with retention off, so that nothing is
purged behind the measurements; the purge figures come from a RetentionSweeper with the default
settings run by this process against the same database, while single triggers are timed. The
purge deletes part of the seeded history (the figures say how much): later runs on the same
database purge what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from grpc import aio

from bench.common import BENCH_ENV, PG, bench_mesh, create_job, database_url, login, percentile, reset_database
from bench.scale_seed import SeedSize, is_seeded, seed
from scheduler.maintenance import RetentionSettings, RetentionSweeper
from taskmesh.db.pg import Database
from taskmesh.db.run_purge import RunCursor, RunPurgeRepository, Window
from taskmesh.db.schema import ensure_database, ensure_schema
from taskmesh.names import Names
from taskmesh.settings import Settings
from taskmesh.states import RunState
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

SEEDED_DB = os.environ.get("TASKMESH_BENCH_DATABASE", "taskmesh_bench_scale_seeded")
EMPTY_DB = f"taskmesh_bench_scale_empty_{os.getpid()}"
# The meshes keep everything: the purge is measured on its own (see the module docstring).
NO_RETENTION = {
    f"TASKMESH_RETENTION_{kind}_DAYS": "0"
    for kind in ("SUCCEEDED", "FAILED", "CANCELLED", "LOGS", "SKIPPED_SLOTS")
}
SAMPLES = 300


def prepare_seeded(database: str, scale: float) -> None:
    """Create, migrate and seed `database` unless it already holds a seed."""
    ensure_database(database_url(database))
    started = time.monotonic()
    ensure_schema(database_url(database))
    print(f"schema of {database} at head in {time.monotonic() - started:.1f}s", flush=True)
    with psycopg.connect(f"{PG}/{database}", autocommit=True) as conn:
        if is_seeded(conn):
            row = conn.execute("SELECT jobs, runs, log_lines, seeded_at FROM bench_seed").fetchone()
            print(f"database {database} already seeded: {row}")
            return
        size = SeedSize.at(scale)
        print(f"seeding {database}: {size}", flush=True)
        started = time.monotonic()
        seed(conn, size, datetime.now(UTC))
        print(f"seeded in {time.monotonic() - started:.0f}s", flush=True)


@dataclass
class Figures:
    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values[name] = value
        if name.endswith("p99 ms") and "last" in MEDIANS:
            self.values[name.replace("p99", "p50")] = MEDIANS.pop("last")
        print(f"  {name}: {value:,.1f}", flush=True)


MEDIANS: dict[str, float] = {}


async def p99_ms(call: Callable[[int], Awaitable[Any]], count: int = SAMPLES) -> float:
    """p99 of `count` sequential calls (their p50 goes to MEDIANS["last"], for the table)."""
    await call(0)  # warm
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        await call(index)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    MEDIANS["last"] = percentile(latencies, 0.5)
    return percentile(latencies, 0.99)


def wait_succeeded(database: str, job_id: str, expected: int, timeout: float) -> float:
    """Runs/s from the first queue_time to the last finish_time of the job's runs."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(f"{PG}/{database}", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*), extract(epoch FROM max(finish_time) - min(queue_time)) FROM runs"
                " WHERE job_id = %s AND state = 'SUCCEEDED' AND trigger = 'MANUAL'",
                (job_id,),
            ).fetchone()
            assert row is not None
            if row[0] >= expected:
                return float(row[0]) / float(row[1])
            time.sleep(0.1)
    raise TimeoutError(f"runs of {job_id} did not all succeed within {timeout:.0f}s")


@dataclass(frozen=True)
class Targets:
    """What the reads read: a job with runs, jobs for status misses, runs to get."""

    history_job: str
    status_jobs: list[str]
    run_ids: list[str]


def targets(database: str, bench_job: str) -> Targets:
    with psycopg.connect(f"{PG}/{database}", autocommit=True) as conn:
        jobs = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM jobs TABLESAMPLE SYSTEM (5) WHERE name LIKE 'scale-job-%%' LIMIT %s", (SAMPLES,)
            ).fetchall()
        ]
        runs = [
            str(r[0])
            for r in conn.execute("SELECT id FROM runs TABLESAMPLE SYSTEM (1) LIMIT %s", (SAMPLES * 3,)).fetchall()
        ]
    random.Random(14).shuffle(runs)
    if not jobs:  # the empty database: the bench job is all there is
        return Targets(bench_job, [bench_job], runs[:SAMPLES] or [])
    return Targets(jobs[0], jobs, runs[:SAMPLES])


async def measure(database: str, label: str, purge_seconds: float) -> Figures:
    print(f"{label} ({database}):", flush=True)
    figures = Figures()
    with bench_mesh(workers=2, extra_env=NO_RETENTION, keep_database=database):
        async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
            token = await login(channel)
            md = (("authorization", f"Bearer {token}"),)
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            job_id = await create_job(
                channel, token, f"scale-bench-{os.getpid()}", job_pb2.Executor(noop=job_pb2.NoopExecutor())
            )
            await batch_triggers(stub, md, job_id, 5000)
            figures.add("BatchTriggerJobs runs/s end to end", wait_succeeded(database, job_id, 5000, 600))
            trigger = job_service_pb2.TriggerJobRequest(id=job_id)
            figures.add("TriggerJob p99 ms", await p99_ms(lambda _: stub.TriggerJob(trigger, metadata=md)))
            await asyncio.sleep(2)  # the cache writer catches up
            found = targets(database, job_id)
            status = job_service_pb2.GetJobStatusRequest
            figures.add(
                "GetJobStatus cache hit p99 ms",
                await p99_ms(lambda _: stub.GetJobStatus(status(id=job_id), metadata=md)),
            )
            cache = redis.Redis.from_url(Settings().redis_url)
            names = Names(BENCH_ENV["TASKMESH_NAMESPACE"])

            async def miss(index: int) -> Any:
                target = found.status_jobs[index % len(found.status_jobs)]
                cache.delete(names.job_status_key(target))
                return await stub.GetJobStatus(status(id=target), metadata=md)

            figures.add("GetJobStatus cache miss p99 ms", await p99_ms(miss))
            list_runs = job_service_pb2.ListRunsRequest
            for name, request in (
                ("ListRuns all p99 ms", list_runs()),
                ("ListRuns one job p99 ms", list_runs(job_id=found.history_job)),
                ("ListRuns state=FAILED p99 ms", list_runs(filter="state=FAILED")),
                ("ListRuns state=QUEUED p99 ms", list_runs(filter="state=QUEUED")),
            ):
                figures.add(name, await p99_ms(lambda _, r=request: stub.ListRuns(r, metadata=md), 100))
            labelled = job_service_pb2.ListJobsRequest(filter='labels.app="app-7"')
            figures.add(
                "ListJobs labels.app p99 ms", await p99_ms(lambda _: stub.ListJobs(labelled, metadata=md), 100)
            )
            run_ids = found.run_ids or [job_id]
            get_run = job_service_pb2.GetRunRequest
            figures.add(
                "GetRun p99 ms",
                await p99_ms(lambda i: stub.GetRun(get_run(id=run_ids[i % len(run_ids)]), metadata=md)),
            )
            await measure_purge(database, figures, purge_seconds, lambda: stub.TriggerJob(trigger, metadata=md))
    return figures


async def batch_triggers(stub: job_service_pb2_grpc.JobServiceStub, md: Any, job_id: str, runs: int) -> None:
    remaining = runs

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            size = min(100, remaining)
            remaining -= size
            requests = [job_service_pb2.TriggerJobRequest(id=job_id)] * size
            await stub.BatchTriggerJobs(job_service_pb2.BatchTriggerJobsRequest(requests=requests), metadata=md)

    await asyncio.gather(*(client() for _ in range(4)))


class CountingPurge(RunPurgeRepository):
    """Counts what the sweeper deletes."""

    def __init__(self, engine: Database) -> None:
        super().__init__(engine)
        self.runs = 0
        self.lines = 0

    async def purge_runs(
        self,
        state: RunState,
        field: str,
        default_seconds: float,
        scan_before: datetime,
        cursor: RunCursor,
        window: int,
    ) -> Window:
        done = await super().purge_runs(state, field, default_seconds, scan_before, cursor, window)
        self.runs += done.purged
        return done

    async def purge_logs(
        self, default_seconds: float, scan_before: datetime, after_id: int, window: int
    ) -> Window:
        done = await super().purge_logs(default_seconds, scan_before, after_id, window)
        self.lines += done.purged
        return done


async def measure_purge(
    database: str, figures: Figures, seconds: float, trigger: Callable[[], Awaitable[Any]]
) -> None:
    """The default retention swept by one sweeper for `seconds`, single triggers timed meanwhile."""
    engine = Database(database_url(database), pool_size=2)
    purge = CountingPurge(engine)
    sweeper = RetentionSweeper(purge, RetentionSettings.from_settings(Settings()))
    started = time.monotonic()
    task = asyncio.create_task(sweeper.sweep())
    task.add_done_callback(lambda done: FINISHED.setdefault(id(done), time.monotonic()))
    latencies: list[float] = []
    MEDIANS.pop("last", None)
    while time.monotonic() - started < seconds:  # after a sweep that ended early too: the baseline
        began = time.perf_counter()
        await trigger()
        latencies.append((time.perf_counter() - began) * 1000)
    elapsed = time.monotonic() - started if not task.done() else sweep_seconds(task, started)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await engine.dispose()
    figures.add("purge runs/s", purge.runs / elapsed)
    figures.add("purge log lines/s (of kept runs)", purge.lines / elapsed)
    figures.add("TriggerJob p99 ms while purging", percentile(sorted(latencies), 0.99))
    print(f"  (purged {purge.runs:,} runs, {purge.lines:,} lines in {elapsed:.0f}s)", flush=True)


def sweep_seconds(task: asyncio.Task[Any], started: float) -> float:
    """How long a sweep that ended took (at least a millisecond, for the rates)."""
    return max(0.001, FINISHED.get(id(task), time.monotonic()) - started)


FINISHED: dict[int, float] = {}


def table(empty: Figures, seeded: Figures) -> None:
    print()
    print("| figure | empty | seeded | seeded/empty |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in empty.values.items():
        other = seeded.values.get(name, float("nan"))
        ratio = other / value if value else float("nan")
        print(f"| {name} | {value:,.1f} | {other:,.1f} | {ratio:.2f} |")


async def run_measure(scale: float, purge_seconds: float) -> None:
    if EMPTY_DB == SEEDED_DB:
        raise SystemExit("the empty and the seeded database must differ")
    prepare_seeded(SEEDED_DB, scale)
    reset_database(EMPTY_DB)
    try:
        empty = await measure(EMPTY_DB, "empty", purge_seconds)
    finally:
        reset_database(EMPTY_DB)
    seeded = await measure(SEEDED_DB, "seeded", purge_seconds)
    table(empty, seeded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("seed", "measure"))
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 100k jobs, 10M runs, 20M log lines")
    parser.add_argument("--purge-seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.command == "seed":
        prepare_seeded(SEEDED_DB, args.scale)
    else:
        asyncio.run(run_measure(args.scale, args.purge_seconds))


if __name__ == "__main__":
    main()
