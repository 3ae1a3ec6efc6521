"""taskmesh-up: run the whole mesh (gateway, api_server, scheduler, workers) in the foreground.

Development defaults need no configuration: local PostgreSQL (database `taskmesh`, created if
missing), RabbitMQ guest/guest and Redis. Ctrl-C stops every process. The Mesh class is also
what the end-to-end tests use to start and kill processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskmesh.db.schema import ensure_database, ensure_schema
from taskmesh.settings import SERVER_ONLY_SETTINGS, WORKER_SECRETS, Settings, env_variable
from taskmesh.tls import ClientTls, client_tls, read_pem
from taskmesh.tls import channel as tls_channel

# Held back from the processes that do not need them (see SERVER_ONLY_SETTINGS).
WORKER_WITHHELD = frozenset(env_variable(name) for name in SERVER_ONLY_SETTINGS)
GATEWAY_WITHHELD = WORKER_WITHHELD | {env_variable(name) for name in WORKER_SECRETS}

COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _terminated: bool = field(default=False, repr=False)

    def start(self, echo: Callable[[str, bytes], None] | None = None) -> None:
        if self.log_path is not None:
            self._log_file = self.log_path.open("ab")
            self.popen = subprocess.Popen(
                self.command, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT
            )
            return
        self.popen = subprocess.Popen(self.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if echo is not None:
            threading.Thread(target=self._pump, args=(echo,), daemon=True).start()

    def _pump(self, echo: Callable[[str, bytes], None]) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            echo(self.name, line)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)
            self._terminated = self._terminated or sig == signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            # Once only: a second SIGTERM could land after the process restored the default
            # handler on its way out, and kill it.
            if not self._terminated:
                self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log_file is not None:
            self._log_file.close()
        return self.popen.returncode


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class WorkerListens:
    """Where one worker serves its metrics and its gRPC health ("" when disabled)."""

    metrics: str
    health: str


# The task registry workers load unless TASKMESH_WORKER_TASKS names another ("" for none).
EXAMPLE_TASKS = "taskmesh.examples.tasks:tasks"
# How long start_all waits for each server: on a busy 2-core machine a server's imports and
# first hashes took over 30 s (seen at load 20).
START_TIMEOUT_SECONDS = 90.0


class Mesh:
    """The processes of one mesh, configured by TASKMESH_* variables in `env`. Its workers load
    the example task registry (taskmesh.examples.tasks) unless TASKMESH_WORKER_TASKS is set."""

    def __init__(self, env: Mapping[str, str], log_dir: Path | None = None) -> None:
        self.env = dict(env)
        self.env.setdefault("TASKMESH_WORKER_TASKS", EXAMPLE_TASKS)
        self.settings = _settings_from(self.env)
        self.log_dir = log_dir
        self.processes: dict[str, ManagedProcess] = {}
        self._echo_lock = threading.Lock()
        self._worker_count = 0
        self.worker_listens: dict[str, WorkerListens] = {}

    def _echo(self, name: str, line: bytes) -> None:
        colour = COLOURS[hash(name) % len(COLOURS)]
        with self._echo_lock:
            sys.stdout.write(f"{colour}{name:<10}{RESET} {line.decode(errors='replace')}")
            sys.stdout.flush()

    def spawn(
        self,
        name: str,
        command: list[str],
        extra_env: Mapping[str, str] | None = None,
        withheld: frozenset[str] = frozenset(),
    ) -> ManagedProcess:
        env = {k: v for k, v in {**self.env, **(extra_env or {})}.items() if k not in withheld}
        log_path = self.log_dir / f"{name}.log" if self.log_dir else None
        process = ManagedProcess(name, command, env, log_path)
        process.start(self._echo)
        self.processes[name] = process
        return process

    def migrate(self) -> None:
        ensure_database(self.settings.database_url)
        ensure_schema(self.settings.database_url)

    def start_api_server(
        self, name: str = "api_server", extra_env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        return self.spawn(name, [_bin("taskmesh-api")], extra_env)

    def start_scheduler(
        self, name: str = "scheduler", extra_env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        return self.spawn(name, [_bin("taskmesh-scheduler")], extra_env)

    def start_worker(
        self, extra_env: Mapping[str, str] | None = None, pools: Sequence[str] = ()
    ) -> ManagedProcess:
        """A worker of these pools (`--pool`; default: TASKMESH_WORKER_POOLS, else default)."""
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        env = {"TASKMESH_WORKER_ID": name, **self._worker_ports(), **(extra_env or {})}
        merged = {**self.env, **env}
        self.worker_listens[name] = WorkerListens(
            merged.get("TASKMESH_WORKER_METRICS_LISTEN", self.settings.worker_metrics_listen),
            merged.get("TASKMESH_WORKER_HEALTH_LISTEN", self.settings.worker_health_listen),
        )
        pool_args = [arg for pool in pools for arg in ("--pool", pool)]
        return self.spawn(name, [_bin("taskmesh-worker"), *pool_args], env, WORKER_WITHHELD)

    def _worker_ports(self) -> dict[str, str]:
        """Several workers on one machine: the first listens where the settings say, each other
        one on free ports of the same hosts."""
        if self._worker_count == 1:
            return {}
        ports = {}
        for variable, listen in (
            ("TASKMESH_WORKER_METRICS_LISTEN", self.settings.worker_metrics_listen),
            ("TASKMESH_WORKER_HEALTH_LISTEN", self.settings.worker_health_listen),
        ):
            if listen:
                host = listen.rsplit(":", 1)[0]
                ports[variable] = f"{host}:{free_port(host.strip('[]'))}"
        return ports

    def start_gateway(self) -> ManagedProcess:
        return self.spawn("gateway", [_bin("taskmesh-gateway")], withheld=GATEWAY_WITHHELD)

    def start_all(self, workers: int = 2) -> None:
        """The servers first, then the workers and the gateway. (Starting all at once left the
        api_server's health monitor reporting the scheduler DOWN just after start-up:
        tests/e2e/test_tls_e2e.py failed that way once.)"""
        self.migrate()
        wait = START_TIMEOUT_SECONDS
        api = self.start_api_server()
        scheduler = self.start_scheduler()
        internal = client_tls(self.settings)
        wait_serving(self.settings.api_address, wait, process=api, tls=internal)
        wait_serving(self.settings.scheduler_address, wait, process=scheduler, tls=internal)
        for _ in range(workers):
            self.start_worker()
        gateway = self.start_gateway()
        wait_serving(f"127.0.0.1:{self.settings.gateway_port}", wait, process=gateway, tls=self.gateway_tls())

    def gateway_tls(self) -> ClientTls | None:
        """How taskmesh-up checks an HTTPS gateway: against TASKMESH_TLS_CA_FILE (the system's roots
        when unset); None for a plain HTTP gateway."""
        if not self.settings.gateway_tls_cert_file:
            return None
        ca = self.settings.tls_ca_file
        return ClientTls(read_pem(ca, "tls_ca_file") if ca else None)

    def stop_all(self) -> None:
        order = sorted(self.processes.values(), key=lambda p: 0 if p.name.startswith("worker") else 1)
        for process in order:
            process.signal(signal.SIGTERM)
        for process in order:
            process.stop()

    def exited(self) -> list[ManagedProcess]:
        return [p for p in self.processes.values() if p.popen is not None and not p.alive()]


def _settings_from(env: Mapping[str, str]) -> Settings:
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def wait_serving(
    address: str, timeout: float = 30.0, process: ManagedProcess | None = None, tls: ClientTls | None = None
) -> None:
    """Wait until the gRPC health service at `address` answers SERVING (over TLS when tls is given)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    with tls_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.popen is not None and not process.alive():
                raise RuntimeError(f"{process.name} exited with code {process.popen.returncode} while starting")
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = f"status {response.status}"
            except grpc.RpcError as error:
                last_error = str(error.code())
            time.sleep(0.1)
    raise TimeoutError(f"{address} not serving after {timeout:.0f}s ({last_error})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the whole Taskmesh mesh in the foreground.")
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes (default 2)")
    parser.add_argument("--shell", action="store_true", help="let workers run shell executors")
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"module:attribute of the workers' Python task registry (default {EXAMPLE_TASKS})",
    )
    args = parser.parse_args()
    env = dict(os.environ)
    if args.tasks is not None:
        env["TASKMESH_WORKER_TASKS"] = args.tasks
    env.setdefault("TASKMESH_LOG_JSON", "false")
    if args.shell:
        env["TASKMESH_WORKER_SHELL_ENABLED"] = "true"
    mesh = Mesh(env)
    settings = mesh.settings
    # `kill` (SIGTERM) or a closed terminal (SIGHUP) stops the mesh like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_keyboard_interrupt)
    try:
        mesh.start_all(workers=args.workers)
    except BaseException:
        mesh.stop_all()
        raise
    _print_banner(settings, mesh.worker_listens)
    try:
        while not mesh.exited():
            time.sleep(0.5)
        for process in mesh.exited():
            print(f"{process.name} exited with code {process.popen.returncode if process.popen else '?'}")
    except KeyboardInterrupt:
        print("\nstopping the mesh...")
    finally:
        mesh.stop_all()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _metrics_url(listen: str) -> str:
    return f"http://{listen}/metrics" if listen else "(disabled)"


def _print_banner(settings: Settings, workers: Mapping[str, WorkerListens]) -> None:
    gateway = f"http://127.0.0.1:{settings.gateway_port}"
    password = "admin (development default)" if settings.is_development else "(TASKMESH_ADMIN_PASSWORD)"
    worker_lines = "".join(
        f"\n  {name:<21}metrics {_metrics_url(listens.metrics)}   gRPC health {listens.health or '(disabled)'}"
        for name, listens in workers.items()
    )
    print(
        f"""
Taskmesh is up ({len(workers)} workers). Ctrl-C stops everything.
  REST + gRPC gateway  {gateway}   (grpcurl -plaintext 127.0.0.1:{settings.gateway_port} list)
  OpenAPI document     {gateway}/openapi.json   ({gateway}/openapi.yaml)
  Swagger UI           {gateway}/swagger-ui/index.html
  Health               {gateway}/actuator/health   (/actuator/health/liveness, /actuator/health/readiness)
  Metrics (gateway)    {gateway}/actuator/prometheus   (api_server and scheduler, labelled by process)
  Envoy admin          http://127.0.0.1:{settings.gateway_admin_port}   (read-only: /ready, /stats/prometheus)
  api_server           gRPC {settings.api_address}   metrics {_metrics_url(settings.api_metrics_listen)}
  scheduler            gRPC {settings.scheduler_address}   metrics {_metrics_url(settings.scheduler_metrics_listen)}{worker_lines}
  Logs                 every process's lines below (TASKMESH_LOG_JSON=true for JSON); request ids
                       in the x-request-id header of every gateway response
  Log in as            {settings.admin_username} / {password}
""",
        flush=True,
    )


if __name__ == "__main__":
    main()
