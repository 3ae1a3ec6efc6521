"""The guarded transport at its seams: an injected resolver (names that resolve as a test wants,
rebinding between lookups), a fake inner network backend (a connection that lands elsewhere),
and a real loopback HTTP server that records what reached it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest

from taskmesh.egress import EgressPolicy, MeshEndpoint, parse_rules
from taskmesh.guarded_http import EgressDenied, GuardedBackend, GuardedTransport
from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2
from worker.executors.base import ExecutionContext
from worker.executors.http import HttpExecutor, keeps_headers

CONTEXT = ExecutionContext(run_id="r-1", attempt=1, job_id="j-1", job_name="job")
FAILED = worker_service_pb2.Outcome.FAILED
SUCCEEDED = worker_service_pb2.Outcome.SUCCEEDED


@dataclass
class Recorder:
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    redirect_to: str = ""


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", recorder.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield recorder
    httpd.shutdown()
    httpd.server_close()


class Names:
    """A resolver whose answers the test sets, counting lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self._answers[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]


def _client(policy: EgressPolicy, names: Names) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=GuardedTransport(policy, names), timeout=5)


async def test_a_name_resolving_to_a_denied_address_is_refused_before_anything_is_sent(server: Recorder) -> None:
    names = Names({"inside.test": [["127.0.0.1"]]})
    async with _client(EgressPolicy(), names) as client:
        with pytest.raises(EgressDenied, match=r"127\.0\.0\.1:\d+ is a loopback address"):
            await client.get(f"http://inside.test:{server.port}/")
    assert server.requests == []


async def test_only_allowed_addresses_of_a_name_are_connected_to_and_the_name_stays_the_host(
    server: Recorder,
) -> None:
    names = Names({"mixed.test": [["169.254.169.254", "127.0.0.1"]]})
    async with _client(EgressPolicy(allow_loopback=True), names) as client:
        response = await client.get(f"http://mixed.test:{server.port}/")
    assert response.status_code == 200
    assert server.requests[0][1]["host"] == f"mixed.test:{server.port}"


async def test_every_connection_is_checked_on_what_it_resolved_to_so_rebinding_gains_nothing(
    server: Recorder,
) -> None:
    # First lookup: an allowed address; the second (a new connection, the server closed the
    # first): a loopback address the policy denies.
    names = Names({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    policy = EgressPolicy(allow=parse_rules("127.0.0.1/32", "A"))
    async with _client(policy, names) as client:
        assert (await client.get(f"http://rebind.test:{server.port}/one")).status_code == 200
        with pytest.raises(EgressDenied, match=r"127\.0\.0\.2"):
            await client.get(f"http://rebind.test:{server.port}/two")
    assert names.lookups == ["rebind.test", "rebind.test"]
    assert [path for path, _ in server.requests] == ["/one"]


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        raise AssertionError("nothing may be read from a denied connection")

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        raise AssertionError("nothing may be written to a denied connection")

    async def aclose(self) -> None:
        self.closed = True

    def get_extra_info(self, info: str) -> Any:
        return self.peer if info == "server_addr" else None


class _LandsElsewhere(httpcore.AsyncNetworkBackend):
    """Connects 'somewhere else' than asked: the peer is a mesh port."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.stream = _Stream(("127.0.0.1", 9901))

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        return self.stream


async def test_the_peer_address_of_the_socket_is_checked_before_a_byte_is_sent() -> None:
    inner = _LandsElsewhere()
    policy = EgressPolicy(mesh=(MeshEndpoint("gateway admin port", 9901),), allow_loopback=True)
    backend = GuardedBackend(policy, Names({"a.test": [["8.8.8.8"]]}), inner)
    with pytest.raises(EgressDenied, match="the mesh's gateway admin port"):
        await backend.connect_tcp("a.test", 80)
    assert inner.asked == ["8.8.8.8"]  # connected by the checked IP, not by name
    assert inner.stream.closed


async def test_unix_sockets_are_denied() -> None:
    with pytest.raises(EgressDenied, match="a Unix socket"):
        await GuardedBackend(EgressPolicy(allow_loopback=True)).connect_unix_socket("/tmp/x.sock")


async def test_unresolvable_names_and_refused_connections_are_ordinary_connect_errors() -> None:
    async with httpx.AsyncClient(
        transport=GuardedTransport(EgressPolicy(allow_loopback=True)), timeout=5
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://no-such-host.invalid/")
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/")


async def test_a_redirect_hop_to_a_denied_address_fails_the_attempt_for_good(server: Recorder) -> None:
    server.redirect_to = "http://169.254.169.254/latest/meta-data/"
    executor = HttpExecutor(EgressPolicy(allow_loopback=True))
    try:
        spec = job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"http://127.0.0.1:{server.port}/redirect"))
        outcome = await executor.execute(spec, CONTEXT)
    finally:
        await executor.close()
    assert outcome.status == FAILED and outcome.error is not None
    assert not outcome.error.retryable
    assert outcome.error.kind == run_pb2.RunError.EXECUTOR_FAILED
    assert outcome.error.message == "egress denied: 169.254.169.254:80 is a link-local address"


async def test_a_redirect_to_another_origin_carries_no_job_headers(server: Recorder) -> None:
    # other.test resolves to the same server: another origin all the same.
    server.redirect_to = f"http://other.test:{server.port}/landed"
    names = Names({"other.test": [["127.0.0.1"]]})
    executor = HttpExecutor(EgressPolicy(allow_loopback=True), names)
    spec = job_pb2.HttpExecutor(url=f"http://127.0.0.1:{server.port}/redirect", headers={"X-Api-Key": "k1"})
    try:
        outcome = await executor.execute(job_pb2.Executor(http=spec), CONTEXT)
    finally:
        await executor.close()
    assert outcome.status == SUCCEEDED
    (first_path, first), (landed_path, landed) = server.requests
    assert (first_path, first["x-api-key"]) == ("/redirect", "k1")
    assert landed_path == "/landed" and "x-api-key" not in landed
    assert landed["host"] == f"other.test:{server.port}"
    assert landed["x-taskmesh-run-id"] == "r-1"


async def test_a_redirect_within_the_origin_keeps_the_job_headers(server: Recorder) -> None:
    server.redirect_to = "/landed"
    executor = HttpExecutor(EgressPolicy(allow_loopback=True))
    spec = job_pb2.HttpExecutor(url=f"http://127.0.0.1:{server.port}/redirect", headers={"X-Api-Key": "k1"})
    try:
        outcome = await executor.execute(job_pb2.Executor(http=spec), CONTEXT)
    finally:
        await executor.close()
    assert outcome.status == SUCCEEDED
    assert server.requests[1][0] == "/landed" and server.requests[1][1]["x-api-key"] == "k1"


async def test_redirect_loops_end_non_retryably(server: Recorder) -> None:
    server.redirect_to = "/redirect"
    executor = HttpExecutor(EgressPolicy(allow_loopback=True))
    try:
        spec = job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"http://127.0.0.1:{server.port}/redirect"))
        outcome = await executor.execute(spec, CONTEXT)
    finally:
        await executor.close()
    assert outcome.error is not None and not outcome.error.retryable
    assert "more than 10 redirects" in outcome.error.message
    assert len(server.requests) == 11


@pytest.mark.parametrize(
    ("first", "hop", "keeps"),
    [
        ("http://a.test/x", "http://a.test/y", True),
        ("http://a.test/x", "http://a.test:80/y", True),
        ("http://a.test/x", "https://a.test/y", True),  # an upgrade of the same host
        ("https://a.test/x", "https://a.test:443/y", True),
        ("http://a.test/x", "http://b.test/y", False),
        ("http://a.test/x", "http://a.test:8080/y", False),
        ("https://a.test/x", "http://a.test/y", False),  # a downgrade
        ("http://a.test:8080/x", "https://a.test/y", False),
        ("http://a.test/x", "http://sub.a.test/y", False),
    ],
)
def test_which_hops_keep_the_job_headers(first: str, hop: str, keeps: bool) -> None:
    assert keeps_headers(httpx.URL(first), httpx.URL(hop)) is keeps
