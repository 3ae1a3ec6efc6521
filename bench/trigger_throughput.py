"""End-to-end throughput and trigger-to-start latency of no-op runs.

Starts a private mesh (a database and namespace of its own, free ports), triggers no-op runs through
the gRPC API and waits until every run SUCCEEDED. Every state is durable in PostgreSQL.

  python -m bench.trigger_throughput                     # closed loop: 10,000 runs, 64 in flight
  python -m bench.trigger_throughput --rate 200 --seconds 20   # open loop at 200 runs/s
  python -m bench.trigger_throughput --batch 100       # BatchTriggerJobs of 100 runs
  python -m bench.trigger_throughput --batch 100 --notify RUN_FINISHED   # plus a notification
      rule that matches every run, posting to a local receiver (the cost of notifications)
  python -m bench.trigger_throughput --parameters      # each trigger with ~200 bytes of parameters,
                                                       # validated against the job's JSON Schema

Prints runs/s from the first trigger to the last SUCCEEDED, and trigger-to-start latency
(run start_time - queue_time, both stamped by PostgreSQL) percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psycopg
from grpc import aio

from bench.common import BENCH_ENV, CpuMeter, bench_mesh, create_job, db_url, login, percentile
from bench.notify_sink import NotifySink, add_notification_rule, delivery_report
from taskmesh.parameters import to_struct
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

# --parameters: ~200 bytes of parameters per trigger, and the schema the job checks them with.
PARAMETERS = {
    "customer_id": 123456,
    "region": "eu-west-1",
    "report": "monthly-revenue-by-product-line",
    "currency": "EUR",
    "include_refunds": True,
    "recipients": ["finance@example.com", "ops@example.com"],
    "period": {"from": "2026-11-01", "to": "2026-11-30"},
}
SCHEMA = {
    "type": "object",
    "required": ["customer_id", "region"],
    "properties": {
        "customer_id": {"type": "integer", "minimum": 1},
        "region": {"type": "string", "maxLength": 32},
        "report": {"type": "string"},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "include_refunds": {"type": "boolean"},
        "recipients": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "period": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
    },
}
TRIGGER_FIELDS: dict[str, object] = {}


def trigger_request(job_id: str) -> job_service_pb2.TriggerJobRequest:
    return job_service_pb2.TriggerJobRequest(id=job_id, **TRIGGER_FIELDS)  # type: ignore[arg-type]


async def trigger_closed_loop(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_id: str, runs: int, concurrency: int
) -> None:
    remaining = runs

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await stub.TriggerJob(trigger_request(job_id), metadata=metadata)

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def trigger_batches(
    stub: job_service_pb2_grpc.JobServiceStub,
    metadata: tuple,
    job_id: str,
    runs: int,
    batch: int,
    concurrency: int,
) -> None:
    remaining = runs

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            requests = [trigger_request(job_id)] * size
            await stub.BatchTriggerJobs(
                job_service_pb2.BatchTriggerJobsRequest(requests=requests), metadata=metadata
            )

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def trigger_open_loop(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_id: str, rate: float, seconds: float
) -> int:
    interval = 1.0 / rate
    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(stub.TriggerJob(trigger_request(job_id), metadata=metadata)))
    await asyncio.gather(*tasks)
    return total


def wait_all_succeeded(job_id: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url()) as conn:
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'SUCCEEDED'), count(*) FROM runs WHERE job_id = %s",
                (job_id,),
            ).fetchone()
            conn.commit()
            assert done is not None
            if done[0] >= expected:
                return
            time.sleep(0.05)
    raise TimeoutError(f"only {done[0]} of {expected} runs succeeded within {timeout:.0f}s")


def report(job_id: str, label: str) -> None:
    with psycopg.connect(db_url()) as conn:
        row = conn.execute(
            """SELECT count(*), extract(epoch FROM max(finish_time) - min(queue_time)),
                      array_agg(extract(epoch FROM start_time - queue_time) * 1000 ORDER BY 1)
               FROM runs WHERE job_id = %s AND state = 'SUCCEEDED'""",
            (job_id,),
        ).fetchone()
        doubled = conn.execute(
            "SELECT count(*) FROM runs WHERE job_id = %s AND jsonb_array_length(attempts) > 1", (job_id,)
        ).fetchone()
    assert row is not None and doubled is not None
    count, seconds, latencies = row
    latencies = sorted(float(v) for v in latencies)
    print(f"{label}: {count} runs SUCCEEDED in {seconds:.2f}s = {count / seconds:,.0f} runs/s end to end")
    print(
        "trigger-to-start ms: "
        f"p50 {percentile(latencies, 0.50):.1f}  p95 {percentile(latencies, 0.95):.1f}  "
        f"p99 {percentile(latencies, 0.99):.1f}  max {latencies[-1]:.1f}"
    )
    print(f"runs with more than one attempt: {doubled[0]}")


async def run(args: argparse.Namespace) -> None:
    with bench_mesh(workers=args.workers) as mesh:
        meter = CpuMeter(mesh)
        async with aio.insecure_channel(BENCH_ENV["TASKMESH_API_ADDRESS"]) as channel:
            token = await login(channel)
            metadata = (("authorization", f"Bearer {token}"),)
            fields = {"parameter_schema": to_struct(SCHEMA)} if args.parameters else {}
            if args.parameters:
                TRIGGER_FIELDS["parameters"] = to_struct(PARAMETERS)
            job_id = await create_job(
                channel, token, "bench-noop", job_pb2.Executor(noop=job_pb2.NoopExecutor()), **fields
            )
            sink = NotifySink() if args.notify else None
            if sink is not None:
                await add_notification_rule(channel, metadata, sink.url, args.notify.split(","))
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            meter.start()
            if args.batch:
                total = args.runs
                await trigger_batches(stub, metadata, job_id, total, args.batch, 4)
                label = f"BatchTriggerJobs of {args.batch}, 4 in flight, {args.workers} workers"
            elif args.rate:
                total = await trigger_open_loop(stub, metadata, job_id, args.rate, args.seconds)
                label = f"open loop at {args.rate:g} runs/s for {args.seconds:g}s, {args.workers} workers"
            else:
                total = args.runs
                await trigger_closed_loop(stub, metadata, job_id, total, args.concurrency)
                label = f"closed loop, {args.concurrency} triggers in flight, {args.workers} workers"
        wait_all_succeeded(job_id, total, timeout=max(60.0, total / 100))
        report(job_id, label + (", ~200-byte parameters checked by a schema" if args.parameters else ""))
        print(meter.per_run(total))
        if sink is not None:
            print(delivery_report(sink, db_url(), expected=total if "RUN_FINISHED" in args.notify else 0))
            sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: runs per second")
    parser.add_argument("--batch", type=int, default=0, help="trigger with BatchTriggerJobs of this size")
    parser.add_argument("--seconds", type=float, default=20.0, help="open loop: duration")
    parser.add_argument(
        "--notify", default="", metavar="EVENTS", help="add a rule for these events (comma-separated) on every job"
    )
    parser.add_argument(
        "--parameters", action="store_true", help="~200 bytes of parameters per trigger, checked by a JSON Schema"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
