"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import TypeVar

import psycopg
import redis

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free ports: all held at once while they are picked (one at a time, the
    kernel may hand out a port it just gave back; gRPC servers bind with SO_REUSEPORT, so two of
    a mesh's servers given the same port both start and share its connections)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_for(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, message: str = "") -> T:
    """Poll until condition() returns something truthy; return it or fail with `message`."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message or condition}")
        time.sleep(interval)
        last = condition()
    return last


async def eventually(condition: Callable[[], object], message: str, timeout: float = 10.0) -> None:
    """wait_for, for a condition checked on the running event loop (polling it without
    blocking the loop)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (the condition has no event to wait on)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}") from None


@dataclass
class Isolation:
    """A private database, namespace (queues, Redis keys) and set of ports for one test session."""

    suffix: str
    database: str
    namespace: str
    api_port: int
    scheduler_port: int
    gateway_port: int
    admin_port: int
    api_metrics_port: int
    scheduler_metrics_port: int
    worker_metrics_port: int
    worker_health_port: int

    @classmethod
    def create(cls, label: str = "t") -> Isolation:
        suffix = f"{os.getpid()}_{secrets.token_hex(3)}"
        api, scheduler, gateway, admin, api_metrics, scheduler_metrics, worker_metrics, worker_health = (
            distinct_free_ports(8)
        )
        return cls(
            suffix=suffix,
            database=f"tm_{label}_{suffix}",
            namespace=f"tm{label}{suffix}",
            api_port=api,
            scheduler_port=scheduler,
            gateway_port=gateway,
            admin_port=admin,
            api_metrics_port=api_metrics,
            scheduler_metrics_port=scheduler_metrics,
            worker_metrics_port=worker_metrics,
            worker_health_port=worker_health,
        )

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.database}"

    def env(self) -> dict[str, str]:
        return {
            "TASKMESH_DATABASE_URL": self.database_url,
            "TASKMESH_NAMESPACE": self.namespace,
            "TASKMESH_API_LISTEN": f"127.0.0.1:{self.api_port}",
            "TASKMESH_API_ADDRESS": f"127.0.0.1:{self.api_port}",
            "TASKMESH_SCHEDULER_LISTEN": f"127.0.0.1:{self.scheduler_port}",
            "TASKMESH_SCHEDULER_ADDRESS": f"127.0.0.1:{self.scheduler_port}",
            "TASKMESH_GATEWAY_PORT": str(self.gateway_port),
            "TASKMESH_GATEWAY_ADMIN_PORT": str(self.admin_port),
            "TASKMESH_LOG_JSON": "true",
            "TASKMESH_API_METRICS_LISTEN": f"127.0.0.1:{self.api_metrics_port}",
            "TASKMESH_SCHEDULER_METRICS_LISTEN": f"127.0.0.1:{self.scheduler_metrics_port}",
            # Mesh.start_worker gives each worker ports of its own; these serve any other.
            "TASKMESH_WORKER_METRICS_LISTEN": f"127.0.0.1:{self.worker_metrics_port}",
            "TASKMESH_WORKER_HEALTH_LISTEN": f"127.0.0.1:{self.worker_health_port}",
            # Dependency checks often, so that tests see health changes quickly.
            "TASKMESH_HEALTH_CHECK_INTERVAL": "0.5",
            # argon2 at a test cost (about 1 ms instead of ~180 ms of CPU a hash): every mesh
            # hashes at start-up and every login verifies. Tests of hashing under load set
            # the defaults back (tests/security/test_health_under_load.py).
            "TASKMESH_PASSWORD_HASH_TIME_COST": "1",
            "TASKMESH_PASSWORD_HASH_MEMORY_KIB": "1024",
        }

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        client = redis.Redis()
        keys = list(client.scan_iter(f"{self.namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        delete_rabbitmq_namespace(self.namespace)


def delete_rabbitmq_namespace(namespace: str) -> None:
    """Delete the queues and exchanges a test session declared (best effort)."""
    from taskmesh.broker.cleanup import delete_namespace

    delete_namespace(namespace)


def queue_counts(namespace: str, queue_suffix: str = "runs") -> tuple[int, int]:
    """(messages ready + unacknowledged, consumers) of a queue, from rabbitmqctl: "runs" is the
    main work queue, "runs.shell" a capability queue (taskmesh.names), "runs.dead" the dead letters."""
    output = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages", "consumers", "--no-table-headers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == f"{namespace}.{queue_suffix}":
            return int(parts[1]), int(parts[2])
    return 0, 0


def close_rabbitmq_connections(namespace: str, kind: str = "") -> int:
    """Close the broker connections of one mesh (named '<namespace>-relay' / '-worker'...; only
    those of `kind` if given), as `rabbitmqctl close_all_connections` would, without touching
    anybody else's. Returns how many were closed."""
    import re

    # The default formatter prints pids as close_connection accepts them (the JSON one does not).
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties", "--no-table-headers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    closed = 0
    for line in listing.splitlines():
        pid, _, properties = line.partition("\t")
        name = re.search(r'\{"connection_name","([^"]*)"\}', properties)
        if name and name.group(1).startswith(f"{namespace}-{kind}"):
            result = subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid.strip(), "taskmesh fault test"],
                capture_output=True,
                check=False,
            )
            closed += result.returncode == 0
    return closed


class EffectServer:
    """A local HTTP target for http jobs that records each request's effect: the path and the
    X-Taskmesh-Run-Id / X-Taskmesh-Attempt headers. Paths starting with /fail answer 500."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.hits: list[tuple[str, str, int]] = []
        lock = threading.Lock()
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    hits.append(
                        (
                            self.path,
                            self.headers.get("X-Taskmesh-Run-Id", ""),
                            int(self.headers.get("X-Taskmesh-Attempt", 0)),
                        )
                    )
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def runs_hit(self, path: str) -> list[str]:
        return [run_id for p, run_id, _ in list(self.hits) if p == path]

    def close(self) -> None:
        self._server.shutdown()


class PrivateRedis:
    """A redis-server of our own, so that a test may stop it without disturbing anyone."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), timeout=10, message="private redis to start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class JsonEchoServer:
    """A local HTTP target for http jobs that answers each GET with JSON made by
    `answer(path, headers)` (Content-Type application/json, so that it becomes the run's
    output) and records (path, headers) in `seen`; headers are looked up case-insensitively."""

    def __init__(self, answer: Callable[[str, Message], object]) -> None:
        import http.server
        import json
        import threading

        self.seen: list[tuple[str, Message]] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, self.headers))
                body = json.dumps(answer(self.path, self.headers)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
