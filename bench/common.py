"""Shared by the benchmarks: a private mesh (own database, namespace and ports) and helpers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc import aio

from taskmesh.broker.cleanup import delete_namespace
from taskmesh.launcher import Mesh, free_port
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc, job_pb2, job_service_pb2, job_service_pb2_grpc

# Every benchmark run gets its own database, namespace and ports, so that two can run at once
# (and beside the tests); TASKMESH_BENCH_DATABASE names the database when it must be known.
_RUN = f"{os.getpid()}"
BENCH_DB = os.environ.get("TASKMESH_BENCH_DATABASE", f"taskmesh_bench_{_RUN}")
_API_PORT = free_port()
_SCHEDULER_PORT = free_port()
BENCH_ENV = {
    "TASKMESH_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DB}",
    "TASKMESH_NAMESPACE": f"tmbench{_RUN}",
    "TASKMESH_API_LISTEN": f"127.0.0.1:{_API_PORT}",
    "TASKMESH_API_ADDRESS": f"127.0.0.1:{_API_PORT}",
    "TASKMESH_SCHEDULER_LISTEN": f"127.0.0.1:{_SCHEDULER_PORT}",
    "TASKMESH_SCHEDULER_ADDRESS": f"127.0.0.1:{_SCHEDULER_PORT}",
    "TASKMESH_GATEWAY_PORT": str(free_port()),
    "TASKMESH_GATEWAY_ADMIN_PORT": str(free_port()),
    "TASKMESH_LOG_LEVEL": "WARNING",
    # No metrics or worker health listeners: the benchmarks must not take the default ports.
    "TASKMESH_API_METRICS_LISTEN": "",
    "TASKMESH_SCHEDULER_METRICS_LISTEN": "",
    "TASKMESH_WORKER_METRICS_LISTEN": "",
    "TASKMESH_WORKER_HEALTH_LISTEN": "",
}
PG = "postgresql://postgres@127.0.0.1:5432"


def reset_database(name: str = BENCH_DB) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@contextmanager
def bench_mesh(
    workers: int, schedulers: int = 1, extra_env: dict[str, str] | None = None, keep_database: str | None = None
) -> Iterator[Mesh]:
    """A private mesh on a fresh database (BENCH_DB, dropped afterwards), or on `keep_database`
    as it is (migrated to head, never dropped: a seeded history reused between runs)."""
    if keep_database is None:
        reset_database()
    env = {**os.environ, **BENCH_ENV, **(extra_env or {})}
    if keep_database is not None:
        env["TASKMESH_DATABASE_URL"] = database_url(keep_database)
    log_dir = Path(tempfile.mkdtemp(prefix="taskmesh-bench-"))
    mesh = Mesh(env, log_dir=log_dir)
    try:
        mesh.start_all(workers=workers)
        for index in range(1, schedulers):
            listen = f"127.0.0.1:{free_port()}"
            mesh.start_scheduler(f"scheduler-{index + 1}", {"TASKMESH_SCHEDULER_LISTEN": listen})
        print(f"(process logs in {log_dir})")
        yield mesh
    finally:
        mesh.stop_all()
        if keep_database is None:
            reset_database()
        delete_namespace(BENCH_ENV["TASKMESH_NAMESPACE"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_backends(name: str = BENCH_DB) -> list[int]:
    """PostgreSQL's backend processes serving the database `name` (their title names it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {name} " in title:
            pids.append(int(entry))
    return pids


def _backends_cpu(pids: Sequence[int]) -> dict[int, float]:
    used = {}
    for pid in pids:
        try:
            used[pid] = cpu_seconds(pid)
        except OSError:  # gone meanwhile
            continue
    return used


class CpuMeter:
    """CPU used by each mesh process (and this one) between start() and per_run(), and by the
    PostgreSQL backends serving the mesh's database (the statements' own cost)."""

    def __init__(self, mesh: Mesh) -> None:
        self._pids = {name: p.pid for name, p in mesh.processes.items()} | {"bench client": os.getpid()}
        self._start: dict[str, float] = {}
        self._backends: dict[int, float] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._backends = _backends_cpu(database_backends())

    def per_run(self, runs: int) -> str:
        used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self._pids.items()}
        now = _backends_cpu(database_backends())
        used["postgres"] = sum(seconds - self._backends.get(pid, 0.0) for pid, seconds in now.items())
        parts = ", ".join(f"{name} {seconds * 1e6 / runs:.0f}" for name, seconds in used.items())
        return f"CPU us per run: {parts} (total {sum(used.values()) * 1e6 / runs:.0f})"


def db_url() -> str:
    return f"{PG}/{BENCH_DB}"


async def login(channel: aio.Channel, username: str = "admin", password: str = "admin") -> str:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    response = await stub.Login(auth_service_pb2.LoginRequest(username=username, password=password))
    return response.access_token


async def create_job(
    channel: aio.Channel, token: str, name: str, executor: job_pb2.Executor, **fields: Any
) -> str:
    """`fields`: other Job fields (parameters, parameter_schema, ...)."""
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    job = await stub.CreateJob(
        job_service_pb2.CreateJobRequest(job=job_pb2.Job(name=name, executor=executor, **fields)),
        metadata=(("authorization", f"Bearer {token}"),),
    )
    return job.id


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def is_rpc_error(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError)
