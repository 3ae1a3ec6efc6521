"""Python tasks and worker pools: end-to-end throughput and trigger-to-start latency.

Starts a private mesh (a database and namespace of its own, free ports); workers load the
example registry (taskmesh.examples.tasks), whose `examples.noop` does nothing. Every state is
durable in PostgreSQL.

  python -m bench.python_tasks --scenario compare      # noop executor vs no-op Python task,
                                                       # BatchTriggerJobs of 100, 2 workers
  python -m bench.python_tasks --scenario pools        # 10 pools x 1 worker vs 1 pool x 10 workers
  python -m bench.python_tasks --scenario latency      # open loop at 200 runs/s, Python task

Prints runs/s from the first queue_time to the last finish_time, and trigger-to-start latency
(run start_time - queue_time, both stamped by PostgreSQL) percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import psycopg
from grpc import aio

from bench.common import BENCH_ENV, CpuMeter, bench_mesh, db_url, login, percentile
from taskmesh.launcher import Mesh
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

NOOP = job_pb2.Executor(noop=job_pb2.NoopExecutor())
PYTHON_NOOP = job_pb2.Executor(python=job_pb2.PythonExecutor(task="examples.noop"))


async def create_job(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, name: str, executor: job_pb2.Executor, pool: str
) -> str:
    job = job_pb2.Job(name=name, executor=executor, pool=pool)
    return (await stub.CreateJob(job_service_pb2.CreateJobRequest(job=job), metadata=metadata)).id


async def trigger_batches(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_ids: Sequence[str], runs: int, batch: int
) -> None:
    """`runs` runs spread evenly over the jobs, in batches of `batch`, 4 in flight."""
    remaining = runs
    cursor = 0

    async def client() -> None:
        nonlocal remaining, cursor
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            ids = [job_ids[(cursor + i) % len(job_ids)] for i in range(size)]
            cursor += size
            requests = [job_service_pb2.TriggerJobRequest(id=job_id) for job_id in ids]
            await stub.BatchTriggerJobs(
                job_service_pb2.BatchTriggerJobsRequest(requests=requests), metadata=metadata
            )

    await asyncio.gather(*(client() for _ in range(4)))


async def trigger_open_loop(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_id: str, rate: float, seconds: float
) -> int:
    interval, total, start = 1.0 / rate, int(rate * seconds), time.perf_counter()
    calls = []
    for i in range(total):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        request = job_service_pb2.TriggerJobRequest(id=job_id)
        calls.append(asyncio.ensure_future(stub.TriggerJob(request, metadata=metadata)))
    await asyncio.gather(*calls)
    return total


def wait_workers(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM worker_sessions WHERE expires_at > now()").fetchone()
            if row is not None and row[0] >= count:
                time.sleep(1.0)  # their RabbitMQ consumers start beside their streams
                return
            time.sleep(0.1)
    raise TimeoutError(f"{count} workers did not connect within {timeout:.0f}s")


def wait_succeeded(job_ids: Sequence[str], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    with psycopg.connect(db_url(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM runs WHERE job_id = ANY(%s::uuid[]) AND state = 'SUCCEEDED'",
                (list(job_ids),),
            ).fetchone()
            done = row[0] if row else 0
            if done >= expected:
                return
            time.sleep(0.05)
    raise TimeoutError(f"only {done} of {expected} runs succeeded within {timeout:.0f}s")


def report(job_ids: Sequence[str], label: str) -> float:
    with psycopg.connect(db_url()) as conn:
        row = conn.execute(
            """SELECT count(*), extract(epoch FROM max(finish_time) - min(queue_time)),
                      array_agg(extract(epoch FROM start_time - queue_time) * 1000 ORDER BY 1)
               FROM runs WHERE job_id = ANY(%s::uuid[]) AND state = 'SUCCEEDED'""",
            (list(job_ids),),
        ).fetchone()
    assert row is not None
    count, seconds, latencies = row
    latencies = sorted(float(v) for v in latencies)
    rate = count / float(seconds)
    print(f"{label}: {count} runs SUCCEEDED in {seconds:.2f}s = {rate:,.0f} runs/s end to end")
    print(
        f"  trigger-to-start ms: p50 {percentile(latencies, 0.50):.1f}  p95 {percentile(latencies, 0.95):.1f}  "
        f"p99 {percentile(latencies, 0.99):.1f}  max {latencies[-1]:.1f}"
    )
    return rate


async def measure_batch(
    mesh: Mesh, label: str, executor: job_pb2.Executor, pools: Sequence[str], runs: int, batch: int
) -> float:
    meter = CpuMeter(mesh)
    async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
        metadata = (("authorization", f"Bearer {await login(channel)}"),)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        stamp = time.monotonic_ns()
        job_ids = [
            await create_job(stub, metadata, f"bench-{stamp}-{i}", executor, p) for i, p in enumerate(pools)
        ]
        meter.start()
        await trigger_batches(stub, metadata, job_ids, runs, batch)
    wait_succeeded(job_ids, runs, timeout=max(120.0, runs / 50))
    rate = report(job_ids, label)
    print("  " + meter.per_run(runs))
    return rate


async def compare(args: argparse.Namespace) -> None:
    with bench_mesh(workers=args.workers) as mesh:
        wait_workers(args.workers)
        label = f"BatchTriggerJobs of {args.batch}, {args.workers} workers"
        noop = await measure_batch(mesh, f"noop executor, {label}", NOOP, ["default"], args.runs, args.batch)
        python = await measure_batch(
            mesh, f"no-op Python task, {label}", PYTHON_NOOP, ["default"], args.runs, args.batch
        )
        print(f"Python task / noop executor: {python / noop:.1%}")


async def pools(args: argparse.Namespace) -> None:
    count = args.pools
    with bench_mesh(workers=count) as mesh:
        wait_workers(count)
        one = await measure_batch(
            mesh, f"1 pool, {count} workers, {count} jobs", PYTHON_NOOP, ["default"] * count, args.runs, args.batch
        )
    with bench_mesh(workers=0) as mesh:
        names = [f"p{i}" for i in range(count)]
        for name in names:
            mesh.start_worker(pools=[name])
        wait_workers(count)
        many = await measure_batch(
            mesh, f"{count} pools x 1 worker, a job each", PYTHON_NOOP, names, args.runs, args.batch
        )
    print(f"{count} pools / 1 pool: {many / one:.1%}")


async def latency(args: argparse.Namespace) -> None:
    with bench_mesh(workers=args.workers) as mesh:
        wait_workers(args.workers)
        meter = CpuMeter(mesh)
        async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
            metadata = (("authorization", f"Bearer {await login(channel)}"),)
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            job_id = await create_job(stub, metadata, "bench-latency", PYTHON_NOOP, "default")
            meter.start()
            total = await trigger_open_loop(stub, metadata, job_id, args.rate, args.seconds)
        wait_succeeded([job_id], total, timeout=120)
        report([job_id], f"no-op Python task, open loop at {args.rate:g} runs/s for {args.seconds:g}s")
        print("  " + meter.per_run(total))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("compare", "pools", "latency"), default="compare")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    scenario = {"compare": compare, "pools": pools, "latency": latency}[args.scenario]
    asyncio.run(scenario(args))


if __name__ == "__main__":
    main()
