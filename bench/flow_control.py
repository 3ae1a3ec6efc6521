"""Flow control benchmarks (issue 12), end to end on a private mesh, every state durable.

  python -m bench.flow_control                 # all scenarios below
  python -m bench.flow_control --only limited  # one of: limited, fairness, priority

limited   BatchTriggerJobs (100 per call, 4 in flight) of no-op runs with mixed priorities
          (0-9), each with a unique concurrency key of limit 1 ("u-{{ run.id }}"), against
          the same runs without flow control, alternately (A B B A) in one session: runs/s of each.
fairness  1,000 keys of limit 1 (one job per key), 10 runs each, triggered key by key (all of
          key 0, then key 1, ...): all drain; the spread across keys of the time each key's
          first and last run finished (round-robin admission: a key late in the trigger order
          does not wait for the keys before it to drain).
priority  10,000 queued priority-0 no-op runs, then one priority-9 run: its trigger-to-start.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import psycopg
from grpc import aio

from bench.common import BENCH_ENV, CpuMeter, bench_mesh, db_url, login, percentile
from taskmesh.launcher import Mesh
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc


class Client:
    def __init__(self, stub: job_service_pb2_grpc.JobServiceStub, token: str) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def job(self, name: str, **fields: object) -> str:
        job = job_pb2.Job(name=name, executor=job_pb2.Executor(noop=job_pb2.NoopExecutor()), **fields)  # type: ignore[arg-type]
        created = await self.stub.CreateJob(job_service_pb2.CreateJobRequest(job=job), metadata=self.metadata)
        return created.id

    async def trigger(
        self, requests: list[job_service_pb2.TriggerJobRequest], batch: int = 100, lanes: int = 4
    ) -> None:
        chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]
        queue = iter(chunks)

        async def lane() -> None:
            for chunk in queue:
                await self.stub.BatchTriggerJobs(
                    job_service_pb2.BatchTriggerJobsRequest(requests=chunk), metadata=self.metadata
                )

        await asyncio.gather(*(lane() for _ in range(lanes)))


def wait_done(job_ids: list[str], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM runs WHERE job_id = ANY(%s::uuid[]) AND state = 'SUCCEEDED'", (job_ids,)
            ).fetchone()
            if row and row[0] >= expected:
                return
            time.sleep(0.05)
    raise TimeoutError(f"runs of {len(job_ids)} jobs not all SUCCEEDED within {timeout:.0f}s")


def throughput(job_ids: list[str]) -> float:
    with psycopg.connect(db_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(finish_time) - min(queue_time)) FROM runs "
            "WHERE job_id = ANY(%s::uuid[]) AND state = 'SUCCEEDED'",
            (job_ids,),
        ).fetchone()
    assert row is not None
    return float(row[0]) / float(row[1])


def mixed(job_id: str, runs: int) -> list[job_service_pb2.TriggerJobRequest]:
    rng = random.Random(12)
    return [job_service_pb2.TriggerJobRequest(id=job_id, priority=rng.randint(0, 9)) for _ in range(runs)]


async def limited(client: Client, mesh: Mesh, runs: int, rounds: int) -> None:
    unique = job_pb2.ConcurrencyLimit(key="u-{{ run.id }}", limit=1)
    figures: dict[str, list[float]] = {"without flow control": [], "unique keys of limit 1": []}
    for round_ in range(rounds):
        # A B, then B A: the database grows with every run and slows both, whichever goes second.
        for label in list(figures) if round_ % 2 == 0 else reversed(figures):
            fields = {"concurrency": unique} if label.startswith("unique") else {}
            job_id = await client.job(f"bench-{label.split()[0]}-{round_}", **fields)
            meter = CpuMeter(mesh)
            meter.start()
            await client.trigger(mixed(job_id, runs))
            wait_done([job_id], runs, timeout=max(120.0, runs / 50))
            figures[label].append(throughput([job_id]))
            print(f"round {round_ + 1}, {label}: {runs} runs, {figures[label][-1]:,.0f} runs/s end to end")
            print(f"  {meter.per_run(runs)}")
    base = sum(figures["without flow control"]) / rounds
    limited_rate = sum(figures["unique keys of limit 1"]) / rounds
    print(
        f"limited: mean {limited_rate:,.0f} runs/s vs {base:,.0f} runs/s without: {100 * limited_rate / base:.0f}%"
    )


async def fairness(client: Client, keys: int, per_key: int) -> None:
    limit = job_pb2.ConcurrencyLimit(limit=1)  # the job's own key
    started = time.monotonic()
    job_ids = list(await asyncio.gather(*(client.job(f"bench-fair-{i}", concurrency=limit) for i in range(keys))))
    print(f"fairness: created {keys} jobs in {time.monotonic() - started:.1f}s")
    requests = [job_service_pb2.TriggerJobRequest(id=j) for j in job_ids for _ in range(per_key)]
    await client.trigger(requests, lanes=1)  # key by key, in order
    wait_done(job_ids, keys * per_key, timeout=600)
    with psycopg.connect(db_url(), autocommit=True) as conn:
        rows = conn.execute(
            """SELECT extract(epoch FROM min(r.finish_time) - t0.t), extract(epoch FROM max(r.finish_time) - t0.t)
               FROM runs r, (SELECT min(queue_time) AS t FROM runs WHERE job_id = ANY(%s::uuid[])) t0
               WHERE r.job_id = ANY(%s::uuid[]) GROUP BY r.job_id, t0.t""",
            (job_ids, job_ids),
        ).fetchall()
    firsts = sorted(float(r[0]) for r in rows)
    lasts = sorted(float(r[1]) for r in rows)
    print(
        f"fairness: {keys} keys x {per_key} runs drained in {lasts[-1]:.2f}s ({throughput(job_ids):,.0f} runs/s); "
        f"first run of a key finished: p50 {percentile(firsts, 0.5):.2f}s p99 {percentile(firsts, 0.99):.2f}s "
        f"max {firsts[-1]:.2f}s; last run of a key: min {lasts[0]:.2f}s p50 {percentile(lasts, 0.5):.2f}s "
        f"max {lasts[-1]:.2f}s (spread {lasts[-1] - lasts[0]:.2f}s)"
    )


async def priority(client: Client, backlog: int) -> None:
    job_id = await client.job("bench-priority", priority=0)
    await client.trigger([job_service_pb2.TriggerJobRequest(id=job_id)] * backlog, batch=500)
    urgent = await client.stub.TriggerJob(
        job_service_pb2.TriggerJobRequest(id=job_id, priority=9), metadata=client.metadata
    )
    wait_done([job_id], backlog + 1, timeout=600)
    with psycopg.connect(db_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM start_time - queue_time), "
            "(SELECT count(*) FROM runs WHERE job_id = %s AND start_time > r.start_time) "
            "FROM runs r WHERE id = %s",
            (job_id, urgent.id),
        ).fetchone()
    assert row is not None
    print(
        f"priority: a priority-9 run behind {backlog} priority-0 runs started {float(row[0]) * 1000:.0f} ms "
        f"after its trigger; {row[1]} backlog runs started after it"
    )


async def run(args: argparse.Namespace) -> None:
    with bench_mesh(workers=args.workers) as mesh:
        async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
            client = Client(job_service_pb2_grpc.JobServiceStub(channel), await login(channel))
            if args.only in ("", "limited"):
                await limited(client, mesh, args.runs, args.rounds)
            if args.only in ("", "fairness"):
                await fairness(client, args.keys, args.per_key)
            if args.only in ("", "priority"):
                await priority(client, args.backlog)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("", "limited", "fairness", "priority"), default="")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
