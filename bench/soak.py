"""Soak under chaos: N short runs on W workers while a loop SIGKILLs a random worker every few
seconds (and starts a replacement).

Each run is an http job against a local recorder that logs (run id, attempt) of every request
it receives, so effects are counted, not inferred. Prints the count per terminal state, attempts
executed more than once (must be 0: each attempt is claimed by exactly one worker), runs lost
(never reaching a terminal state; must be 0), how many runs needed a retry because their worker
was killed (their effect ran under two attempts: delivery is at least once, receivers dedupe by
X-Taskmesh-Run-Id), and the time to drain.

  python -m bench.soak                       # 5,000 runs, 3 workers, a kill every 3 s
  python -m bench.soak --runs 1000 --kill-every 2
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from collections import Counter

import psycopg
from grpc import aio

from bench.common import BENCH_ENV, bench_mesh, create_job, db_url, login
from taskmesh.launcher import Mesh
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.support import EffectServer

SOAK_SETTINGS = {"TASKMESH_LEASE_SECONDS": "3", "TASKMESH_AMQP_HEARTBEAT_SECONDS": "2"}


async def trigger_all(stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_id: str, runs: int) -> None:
    remaining = runs

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await stub.TriggerJob(job_service_pb2.TriggerJobRequest(id=job_id), metadata=metadata, timeout=30)

    await asyncio.gather(*(client() for _ in range(32)))


async def chaos(mesh: Mesh, every: float, stop: asyncio.Event) -> int:
    kills = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            workers = [p for name, p in mesh.processes.items() if name.startswith("worker") and p.alive()]
            if workers:
                random.choice(workers).signal(signal.SIGKILL)
                kills += 1
                mesh.start_worker()
    return kills


def states(job_id: str) -> Counter[str]:
    with psycopg.connect(db_url()) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM runs WHERE job_id = %s GROUP BY state", (job_id,)
        ).fetchall()
    return Counter(dict(rows))


async def run(args: argparse.Namespace) -> None:
    recorder = EffectServer()
    with bench_mesh(workers=args.workers, extra_env=SOAK_SETTINGS) as mesh:
        async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
            token = await login(channel)
            metadata = (("authorization", f"Bearer {token}"),)
            executor = job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"{recorder.base}/soak"))
            job_id = await create_job(channel, token, "soak", executor)
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            policy = job_pb2.RetryPolicy(max_attempts=10, jitter=0.0)
            policy.initial_backoff.FromMilliseconds(200)
            job = job_pb2.Job(id=job_id, retry_policy=policy)
            request = job_service_pb2.UpdateJobRequest(job=job)
            request.update_mask.paths.append("retry_policy")
            await stub.UpdateJob(request, metadata=metadata)

            stop = asyncio.Event()
            chaos_task = asyncio.create_task(chaos(mesh, args.kill_every, stop))
            started = time.monotonic()
            await trigger_all(stub, metadata, job_id, args.runs)
            deadline = time.monotonic() + args.timeout
            while sum(states(job_id)[s] for s in ("SUCCEEDED", "FAILED", "CANCELLED")) < args.runs:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            drained = time.monotonic() - started
            stop.set()
            kills = await chaos_task
    recorder.close()
    report(args, states(job_id), recorder, kills, drained)


def report(
    args: argparse.Namespace, final: Counter[str], recorder: EffectServer, kills: int, drained: float
) -> None:
    hits = list(recorder.hits)
    per_attempt = Counter((run_id, attempt) for _, run_id, attempt in hits)
    per_run = Counter(run_id for run_id, _ in per_attempt)
    print(
        f"soak: {args.runs} runs, {args.workers} workers, a worker SIGKILLed every {args.kill_every:g}s "
        f"({kills} kills)"
    )
    terminal = {state: final[state] for state in ("SUCCEEDED", "FAILED", "CANCELLED")}
    print(f"terminal states: {terminal}")
    print(f"attempts executed more than once: {sum(1 for c in per_attempt.values() if c > 1)} (must be 0)")
    print(f"runs lost (not terminal after {args.timeout:g}s): {args.runs - sum(terminal.values())} (must be 0)")
    print(
        f"runs whose effect ran under 2+ attempts (worker killed mid-run, retried): "
        f"{sum(1 for c in per_run.values() if c > 1)}"
    )
    print(f"runs with no effect recorded: {args.runs - len(per_run)}")
    print(f"time to drain (first trigger to last terminal state): {drained:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
