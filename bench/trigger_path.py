"""CPU of the api_server's batch trigger path, in-process (no mesh, no broker): the servicer's
validation of a BatchTriggerJobs request, Runs.trigger_many against PostgreSQL, and the runs
converted back to protobuf. A database of its own, dropped afterwards.

  python -m bench.trigger_path                # no parameters
  python -m bench.trigger_path --parameters   # ~200 bytes per run, checked by a JSON Schema

Prints CPU microseconds per triggered run (this process: Python, psycopg, protobuf).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import psycopg

from api_server import validation
from api_server.parameters import TriggerInput
from api_server.runs import Runs
from bench.trigger_throughput import PARAMETERS, SCHEMA
from taskmesh.audit import AuditContext
from taskmesh.convert import run_to_proto
from taskmesh.db.jobs import JobRepository
from taskmesh.db.logs import LogRepository
from taskmesh.db.pg import Database
from taskmesh.db.runs import RunRepository
from taskmesh.db.schema import ensure_schema
from taskmesh.ids import new_id
from taskmesh.parameters import to_struct
from taskmesh.v1 import job_service_pb2

ADMIN_URL = os.environ.get("TASKMESH_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class _NoCache:
    def enqueue(self, runs: Any) -> None:
        pass


def _triggers(request: job_service_pb2.BatchTriggerJobsRequest) -> list[TriggerInput]:
    """What JobServicer.BatchTriggerJobs does with a request before calling Runs."""
    return [
        TriggerInput(
            validation.require_id(r.id, f"requests[{i}].id"),
            validation.idempotency_key(r.idempotency_key, f"requests[{i}].idempotency_key"),
            validation.trigger_parameters(r.parameters, r.HasField("parameters"), f"requests[{i}].parameters"),
            f"requests[{i}].parameters",
        )
        for i, r in enumerate(request.requests)
    ]


async def measure(url: str, with_parameters: bool, batches: int) -> float:
    db = Database(url, pool_size=4)
    jobs = JobRepository(db)
    fields = {"parameter_schema": SCHEMA} if with_parameters else {}
    job = await jobs.create(
        new_id(), f"bench-{new_id()[-8:]}", "", {"noop": {}}, {}, audit=AuditContext.system("bench"), **fields
    )
    runs = Runs(jobs, RunRepository(db), LogRepository(db), _NoCache())  # type: ignore[arg-type]
    request = job_service_pb2.BatchTriggerJobsRequest(
        requests=[job_service_pb2.TriggerJobRequest(id=job.id) for _ in range(100)]
    )
    if with_parameters:
        for entry in request.requests:
            entry.parameters.CopyFrom(to_struct(PARAMETERS))
    wire = request.SerializeToString()

    async def one() -> None:
        parsed = job_service_pb2.BatchTriggerJobsRequest.FromString(wire)
        created = await runs.trigger_many(_triggers(parsed), AuditContext.system("bench"))
        job_service_pb2.BatchTriggerJobsResponse(runs=[run_to_proto(r) for r in created]).SerializeToString()

    for _ in range(5):
        await one()
    started = time.process_time()
    for _ in range(batches):
        await one()
    spent = time.process_time() - started
    await db.dispose()
    return spent / (batches * 100) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parameters", action="store_true")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    name = os.environ.get("TASKMESH_BENCH_DATABASE", f"taskmesh_bench_path_{os.getpid()}")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        ensure_schema(url)
        cpu = asyncio.run(measure(url, args.parameters, args.batches))
        label = "~200-byte parameters checked by a schema" if args.parameters else "no parameters"
        print(f"trigger path, batches of 100, {label}: {cpu:.1f} us CPU per triggered run")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
