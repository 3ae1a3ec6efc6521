"""Schedule firing: many jobs on a 1-second cron, fired by two schedulers at once.

Starts a private mesh (a database and namespace of its own, free ports, two schedulers, two
workers), creates the jobs through the gRPC API with the cron expression `* * * * * *`, lets
them fire for the given time, pauses them all and reads what happened from PostgreSQL:

  python -m bench.schedule_fire                    # 200 jobs for 60 s
  python -m bench.schedule_fire --jobs 50 --seconds 20
  python -m bench.schedule_fire --jobs 50000 --cron "* * * * *" --seconds 300   # at scale

--cron takes an every-second (6 fields, seconds first) or an every-minute (5 fields) expression
with `*` in every field: the slot grid the missed count walks is 1 s or 1 min apart. Beyond 1,000
jobs, the jobs are inserted with one SQL statement as CreateJob stores them (schedule, first
slot and due time, at least 30 s ahead) and paused with another: through the API, 50,000
CreateJob and PauseJob calls took longer than the measurement on the shared machine.

Prints fire-lag percentiles (run creation time minus nominal slot time, both stamped by
PostgreSQL), how many slots each scheduler fired (from its Prometheus metrics), and the counts
of doubled slots (two runs for one slot) and missed slots (a slot of a job's grid, from its
first slot to its last fire, without a run); both must be 0; and the CPU each mesh process
used per fired slot, from the first slot on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from grpc import aio

from bench.common import PG, CpuMeter, login, percentile, reset_database
from taskmesh.broker.cleanup import delete_namespace
from taskmesh.launcher import Mesh, wait_serving
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

DATABASE = os.environ.get("TASKMESH_BENCH_DATABASE", f"taskmesh_bench_schedule_{os.getpid()}")
SCHEDULERS = ("scheduler", "scheduler-2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def schedule_mesh(workers: int) -> Iterator[tuple[Mesh, dict[str, int]]]:
    """A private mesh with two schedulers, each serving metrics on a port of its own."""
    reset_database(DATABASE)
    api, gateway, admin = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "TASKMESH_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}",
        "TASKMESH_NAMESPACE": f"tmbenchsched{os.getpid()}",
        "TASKMESH_API_LISTEN": f"127.0.0.1:{api}",
        "TASKMESH_API_ADDRESS": f"127.0.0.1:{api}",
        "TASKMESH_GATEWAY_PORT": str(gateway),
        "TASKMESH_GATEWAY_ADMIN_PORT": str(admin),
        "TASKMESH_LOG_LEVEL": "WARNING",
        "TASKMESH_API_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "TASKMESH_WORKER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "TASKMESH_WORKER_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
    }
    scheduler_ports = {name: free_port() for name in SCHEDULERS}
    env["TASKMESH_SCHEDULER_LISTEN"] = env["TASKMESH_SCHEDULER_ADDRESS"] = (
        f"127.0.0.1:{scheduler_ports['scheduler']}"
    )
    metrics_ports = {name: free_port() for name in SCHEDULERS}
    log_dir = Path(tempfile.mkdtemp(prefix="taskmesh-bench-schedule-"))
    mesh = Mesh(env, log_dir=log_dir)
    try:
        mesh.migrate()
        wait_serving(mesh.settings.api_address, process=mesh.start_api_server())
        for name in SCHEDULERS:
            listen = f"127.0.0.1:{scheduler_ports[name]}"
            process = mesh.start_scheduler(
                name,
                {
                    "TASKMESH_SCHEDULER_ID": name,
                    "TASKMESH_SCHEDULER_LISTEN": listen,
                    "TASKMESH_SCHEDULER_METRICS_LISTEN": f"127.0.0.1:{metrics_ports[name]}",
                },
            )
            wait_serving(listen, process=process)
        for _ in range(workers):
            mesh.start_worker()
        print(f"(process logs in {log_dir})")
        yield mesh, metrics_ports
    finally:
        mesh.stop_all()
        reset_database(DATABASE)
        delete_namespace(env["TASKMESH_NAMESPACE"])


def slot_step(cron: str) -> timedelta:
    fields = cron.split()
    if set(fields) != {"*"} or len(fields) not in (5, 6):
        raise SystemExit("--cron must be '* * * * * *' (every second) or '* * * * *' (every minute)")
    return timedelta(seconds=1) if len(fields) == 6 else timedelta(minutes=1)


async def create_jobs(
    stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, count: int, cron: str, concurrency: int
) -> dict[str, datetime]:
    """Job id -> its first slot."""
    schedule = job_pb2.Schedule(cron=job_pb2.CronSchedule(expression=cron))
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> job_pb2.Job:
        job = job_pb2.Job(name=f"bench-cron-{index}", executor=job_pb2.Executor(noop={}), schedule=schedule)
        async with gate:
            return await stub.CreateJob(job_service_pb2.CreateJobRequest(job=job), metadata=metadata)

    started = time.monotonic()
    jobs = await asyncio.gather(*(one(i) for i in range(count)))
    print(f"created {count:,} jobs in {time.monotonic() - started:.0f}s", flush=True)
    return {job.id: job.next_fire_times[0].ToDatetime(tzinfo=UTC) for job in jobs}


def insert_jobs_in_sql(count: int, cron: str) -> dict[str, datetime]:
    """Job id -> its first slot: `count` jobs as CreateJob would store them, first slot on the
    grid at least 30 s from now (so that they all start on the same slot)."""
    step = "1 second" if len(cron.split()) == 6 else "1 minute"
    unit = "second" if len(cron.split()) == 6 else "minute"
    schedule = json.dumps({"cron": {"expression": cron}})
    with psycopg.connect(f"{PG}/{DATABASE}", autocommit=True) as conn:
        rows = conn.execute(
            f"""INSERT INTO jobs (id, name, description, executor, labels, create_time, update_time, schedule,
                                  next_fire_at, due_at)
                SELECT gen_random_uuid(), 'bench-cron-' || n, '', '{{"noop": {{}}}}', '{{}}', now(), now(),
                       CAST(%s AS jsonb), first.slot, first.slot
                FROM generate_series(1, %s) AS n,
                     (SELECT date_trunc('{unit}', now() + interval '30 seconds') + interval '{step}' AS slot) AS first
                RETURNING id::text, next_fire_at""",
            (schedule, count),
        ).fetchall()
        conn.execute("NOTIFY taskmesh_schedules")
    print(f"inserted {count:,} jobs, first slot {rows[0][1]}", flush=True)
    return dict(rows)


def pause_all_in_sql() -> None:
    with psycopg.connect(f"{PG}/{DATABASE}", autocommit=True) as conn:
        conn.execute("UPDATE jobs SET paused = true WHERE NOT paused")


async def pause_jobs(stub: job_service_pb2_grpc.JobServiceStub, metadata: tuple, job_ids: list[str]) -> None:
    await asyncio.gather(
        *(stub.PauseJob(job_service_pb2.PauseJobRequest(id=job_id), metadata=metadata) for job_id in job_ids)
    )


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def report(
    first_slots: dict[str, datetime], metrics_ports: dict[str, int], label: str, step: timedelta, cpu: CpuMeter
) -> None:
    with psycopg.connect(f"{PG}/{DATABASE}") as conn:
        runs = conn.execute(
            """SELECT job_id::text, slot_time, extract(epoch FROM queue_time - slot_time) * 1000
               FROM runs WHERE trigger = 'SCHEDULE'"""
        ).fetchall()
        last_fires = dict(conn.execute("SELECT id::text, last_fire_at FROM jobs").fetchall())
        skipped = conn.execute("SELECT count(*) FROM skipped_slots").fetchone()
    assert skipped is not None
    per_slot: dict[tuple[str, datetime], int] = {}
    for job_id, slot, _ in runs:
        per_slot[(job_id, slot)] = per_slot.get((job_id, slot), 0) + 1
    doubled = sum(n - 1 for n in per_slot.values())
    expected = 0
    for job_id, first in first_slots.items():
        last = last_fires[job_id]
        expected += 0 if last is None else int((last - first) / step) + 1
    fired_slots = len(per_slot)
    missed = expected - fired_slots
    lags = sorted(float(lag) for _, _, lag in runs)
    print(label)
    print(f"slots fired: {fired_slots:,} of {expected:,} expected")
    print(
        "fire lag ms (run created - nominal slot): "
        f"p50 {percentile(lags, 0.50):.1f}  p99 {percentile(lags, 0.99):.1f}  max {lags[-1]:.1f}"
    )
    per_scheduler = {n: metric(p, "taskmesh_schedule_fire_lag_seconds_count") for n, p in metrics_ports.items()}
    conflicts = sum(metric(p, "taskmesh_schedule_slot_conflicts_total") for p in metrics_ports.values())
    print("slots fired per scheduler: " + ", ".join(f"{n} {int(c):,}" for n, c in per_scheduler.items()))
    print(f"doubled slots: {doubled}   missed slots: {missed}")
    print(f"{cpu.per_run(max(fired_slots, 1)).replace('per run', 'per fired slot')} (PostgreSQL not counted)")
    print(f"(skipped slots recorded: {skipped[0]}; slots the unique constraint had to refuse: {int(conflicts)})")


async def run(args: argparse.Namespace) -> None:
    with schedule_mesh(args.workers) as (mesh, metrics_ports):
        async with aio.insecure_channel(mesh.settings.api_address) as channel:
            token = await login(channel)
            metadata = (("authorization", f"Bearer {token}"),)
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            step = slot_step(args.cron)
            if args.jobs > 1000:
                first_slots = insert_jobs_in_sql(args.jobs, args.cron)
            else:
                first_slots = await create_jobs(stub, metadata, args.jobs, args.cron, args.create_concurrency)
            cpu = CpuMeter(mesh)
            cpu.start()
            await asyncio.sleep(max(first_slots.values()).timestamp() - time.time() + args.seconds)
            if args.jobs > 1000:
                pause_all_in_sql()
            else:
                await pause_jobs(stub, metadata, list(first_slots))
        report(
            first_slots,
            metrics_ports,
            f"{args.jobs} jobs on cron {args.cron!r} for {args.seconds:g}s, {len(SCHEDULERS)} schedulers, "
            f"{args.workers} workers",
            step,
            cpu,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cron", default="* * * * * *", help="'* * * * * *' (default) or '* * * * *'")
    parser.add_argument("--create-concurrency", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
