"""The worker's view of its leases (finding 12), on a fake monotonic clock; and the executors
refusing to start or send once it says the lease expired."""

import http.server
import sys
import threading

import pytest

from taskmesh.egress import EgressPolicy
from taskmesh.records import AttemptRef
from taskmesh.v1 import job_pb2
from worker.executors.base import ExecutionContext, LeaseExpired
from worker.executors.registry import ExecutorRegistry
from worker.leases import Leases

LOCAL = EgressPolicy(allow_loopback=True)  # the tests' targets listen on loopback

REF = AttemptRef("r", 1)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_counts_from_when_the_claim_was_sent_less_a_margin() -> None:
    clock = _Clock()
    leases = Leases(lease_seconds=3.0, clock=clock)
    leases.granted(REF, sent_at=99.0)
    assert leases.valid(REF)
    clock.now = 99.0 + 3.0 - leases.margin  # the margin is taken off
    assert not leases.valid(REF)


def test_heartbeats_extend_a_valid_lease_but_never_revive_an_expired_one() -> None:
    clock = _Clock()
    leases = Leases(lease_seconds=3.0, clock=clock)
    leases.granted(REF, sent_at=100.0)
    clock.now = 102.0
    leases.extended([REF], sent_at=102.0)
    clock.now = 104.0
    assert leases.valid(REF)
    clock.now = 110.0  # the process was paused (SIGSTOP): the deadline passed meanwhile
    leases.extended([REF], sent_at=110.0)
    assert not leases.valid(REF)


def test_a_lost_attempt_is_revoked_at_once_and_unknown_ones_are_not_valid() -> None:
    leases = Leases(lease_seconds=30.0, clock=_Clock())
    leases.granted(REF, sent_at=100.0)
    leases.revoke(REF)
    assert not leases.valid(REF)
    assert not leases.valid(AttemptRef("other", 1))


def _expired(log: list[str] | None = None) -> ExecutionContext:
    return ExecutionContext(run_id="r", attempt=1, job_id="j", job_name="n", lease_valid=lambda: False)


async def test_a_shell_job_is_not_spawned_on_an_expired_lease(tmp_path) -> None:
    marker = tmp_path / "ran"
    spec = job_pb2.ShellExecutor(argv=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    with pytest.raises(LeaseExpired):
        await ExecutorRegistry(shell_enabled=True, egress=LOCAL).execute(job_pb2.Executor(shell=spec), _expired())
    assert not marker.exists()


async def test_an_http_request_is_not_sent_on_an_expired_lease() -> None:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry = ExecutorRegistry(shell_enabled=False, egress=LOCAL)
    try:
        spec = job_pb2.HttpExecutor(url=f"http://127.0.0.1:{server.server_address[1]}/effect")
        with pytest.raises(LeaseExpired):
            await registry.execute(job_pb2.Executor(http=spec), _expired())
    finally:
        await registry.close()
        server.shutdown()
    assert hits == []
