"""One whole mesh (Envoy gateway, api_server, scheduler, two workers) for the e2e tests,
started from the same console scripts `make up` uses, on a private database and namespace."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskmesh.client import TaskmeshClient
from taskmesh.launcher import Mesh
from tests.e2e.cli import Taskmesh, cli_env
from tests.support import Isolation

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def e2e_isolation() -> Iterator[Isolation]:
    isolation = Isolation.create("e")
    yield isolation
    isolation.drop()


@pytest.fixture(scope="session")
def mesh(e2e_isolation: Isolation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    log_dir = tmp_path_factory.mktemp("mesh-logs")
    env = {**os.environ, **e2e_isolation.env(), "TASKMESH_WORKER_SHELL_ENABLED": "true"}
    mesh = Mesh(env, log_dir=log_dir)
    try:
        mesh.start_all(workers=2)
        yield mesh
    finally:
        mesh.stop_all()
        _print_errors(log_dir)


def _print_errors(log_dir: Path) -> None:
    for path in sorted(log_dir.glob("*.log")):
        lines = [line for line in path.read_text(errors="replace").splitlines() if '"ERROR"' in line]
        if lines:
            print(f"--- errors logged by {path.stem} ---")
            print("\n".join(lines[-20:]))


@pytest.fixture(scope="session")
def gateway(mesh: Mesh) -> str:
    return f"http://127.0.0.1:{mesh.settings.gateway_port}"


@pytest.fixture(scope="session")
def admin_token(gateway: str) -> str:
    response = httpx.post(f"{gateway}/api/auth/login", json={"username": "admin", "password": "admin"}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["accessToken"])


@pytest.fixture(scope="session")
def api(gateway: str, admin_token: str) -> Iterator[httpx.Client]:
    """An HTTP client logged in as admin, talking REST to the gateway."""
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def admin_client(gateway: str) -> Iterator[TaskmeshClient]:
    """The Python client, logged in as admin, through the gateway."""
    with TaskmeshClient(gateway, username="admin", password="admin") as client:
        yield client


@pytest.fixture(scope="session")
def taskmesh(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Taskmesh:
    """The `taskmesh` console script, logged in as admin through `taskmesh login` (the token in a
    private config file)."""
    run = Taskmesh(cli_env(gateway, tmp_path_factory.mktemp("cli") / "config.json"))
    login = run("login", "--username", "admin", "--password-stdin", stdin="admin\n")
    assert login.returncode == 0, login.stderr
    return run


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status = 500 if self.path.startswith("/fail") else 200
        body = f"hello from {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def target_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A local HTTP server for http jobs: (base URL, hits per path); /fail... answers 500."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", CountingHandler.hits
    server.shutdown()
