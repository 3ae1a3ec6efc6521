"""Finding 12: a worker that lost its lease while frozen (SIGSTOP) causes no late effect once it
resumes: it finds on its monotonic clock that the lease expired, and neither starts nor
continues the attempt (here: it does not send the request its connection was waiting for)."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import set_policy
from tests.support import wait_for

FAST_RETRY = {"maxAttempts": 3, "initialBackoff": "0.2s", "jitter": 0}


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    return {
        "TASKMESH_LEASE_SECONDS": "3",
        "TASKMESH_AMQP_HEARTBEAT_SECONDS": "2",
        "TASKMESH_WORKER_KILL_GRACE_SECONDS": "1",
        "TASKMESH_TIMEOUT_GRACE_SECONDS": "2",
    }


@pytest.fixture(scope="module")
def mesh_workers() -> int:
    return 2


class HeldTarget:
    """A local HTTP target recording each request's run and attempt (its effect), whose listen
    queue starts full: a worker connecting to it waits in connect (SYN_SENT, retransmitting)
    until the test opens it. So the test knows that attempt 1 was claimed and is in its
    executor, right before its effect."""

    def __init__(self) -> None:
        self.effects: list[tuple[str, int]] = []
        effects = self.effects

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                effects.append(
                    (self.headers.get("X-Taskmesh-Run-Id", ""), int(self.headers.get("X-Taskmesh-Attempt", 0)))
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        self.port = int(listener.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        # One connection nobody accepts fills the queue: later SYNs are dropped meanwhile.
        self._filler = socket.create_connection(("127.0.0.1", self.port))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        self._server.socket = listener
        self._server.daemon_threads = True

    def connecting(self) -> bool:
        """Somebody waits in connect to this target (a SYN_SENT socket towards its port)."""
        port = f"{self.port:04X}"
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return any(row[2] == f"0100007F:{port}" and row[3] == "02" for row in rows)

    def open(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._filler.close()

    def close(self) -> None:
        self._filler.close()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def target() -> Iterator[HeldTarget]:
    server = HeldTarget()
    yield server
    server.close()


def _logged(mesh: Mesh, worker: str, run_id: str, prefix: str) -> bool:
    assert mesh.log_dir is not None
    for line in (mesh.log_dir / f"{worker}.log").read_text().splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("run_id") == run_id and entry.get("message", "").startswith(prefix):
            return True
    return False


def test_a_frozen_worker_sends_no_request_for_an_attempt_it_lost(
    api: httpx.Client, mesh: Mesh, target: HeldTarget
) -> None:
    job = create_job(api, "late-effect", {"http": {"url": f"{target.base}/effect", "timeout": "60s"}})
    set_policy(api, job["id"], FAST_RETRY)
    run_id = trigger(api, job["id"])["id"]
    wait_for(target.connecting, timeout=30, interval=0.01, message="attempt 1 to connect to the target")
    frozen_name = api.get(f"/api/runs/{run_id}").json()["workerId"]
    frozen = mesh.processes[frozen_name]
    frozen.signal(signal.SIGSTOP)
    try:
        target.open()  # the frozen worker's connection now completes, in its kernel only
        final = wait_run_terminal(api, run_id, timeout=60)
        assert final["state"] == "SUCCEEDED" and final["attempt"] == 2
        assert final["workerId"] != frozen_name
        assert final["attempts"][0]["error"]["kind"] == "LOST"
    finally:
        frozen.signal(signal.SIGCONT)
    # Once resumed, the worker ends attempt 1 and reports it (refused: the attempt is not its
    # own any more); whatever it was going to send, it would have sent before that report.
    wait_for(
        lambda: _logged(mesh, frozen_name, run_id, "outcome not recorded"),
        timeout=30,
        message="the resumed worker to report attempt 1",
    )
    assert target.effects == [(run_id, 2)]  # attempt 2's effect only, never attempt 1's
