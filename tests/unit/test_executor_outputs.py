"""Outputs and the Idempotency-Key header, with executors run for real (subprocesses, a local
HTTP server); no Taskmesh services."""

import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from taskmesh.egress import EgressPolicy
from taskmesh.v1 import job_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executors.base import NO_OUTPUT, ExecutionContext
from worker.executors.registry import ExecutorRegistry

LOCAL = EgressPolicy(allow_loopback=True)
CONTEXT = ExecutionContext(run_id="r-7", attempt=2, job_id="j-1", job_name="job", kill_grace_seconds=0.5)
SEEN: list[dict[str, str]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN.append(dict(self.headers))
        kind, _, size = self.path.strip("/").partition("/")
        body, content_type = {
            "json": (b'{"rows": 3, "ok": true}', "application/json; charset=utf-8"),
            "problem": (b'{"title": "nope"}', "application/problem+json"),
            "text": (b'{"rows": 3}', "text/plain"),
            "broken": (b"{not json", "application/json"),
            "big": (json.dumps({"a": "x" * int(size or 70_000)}).encode(), "application/json"),
        }[kind]
        self.send_response(500 if kind == "problem" else 200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def registry() -> ExecutorRegistry:
    return ExecutorRegistry(shell_enabled=True, egress=LOCAL)


def _http(url: str, **fields: object) -> job_pb2.Executor:
    return job_pb2.Executor(http=job_pb2.HttpExecutor(url=url, **fields))  # type: ignore[arg-type]


async def test_a_json_response_body_is_the_output(registry: ExecutorRegistry, base: str) -> None:
    outcome = await registry.execute(_http(f"{base}/json"), CONTEXT)
    assert outcome.status == pb.Outcome.SUCCEEDED and outcome.output == {"rows": 3, "ok": True}
    failed = await registry.execute(_http(f"{base}/problem"), CONTEXT)
    assert failed.status == pb.Outcome.FAILED and failed.output == {"title": "nope"}


@pytest.mark.parametrize("kind", ["text", "broken"])
async def test_a_body_that_is_no_json_gives_no_output(registry: ExecutorRegistry, base: str, kind: str) -> None:
    outcome = await registry.execute(_http(f"{base}/{kind}"), CONTEXT)
    assert outcome.status == pb.Outcome.SUCCEEDED and outcome.output is NO_OUTPUT


async def test_a_json_body_over_the_limit_fails_for_good_unless_discarded(
    registry: ExecutorRegistry, base: str
) -> None:
    outcome = await registry.execute(_http(f"{base}/big"), CONTEXT)
    assert outcome.status == pb.Outcome.FAILED and outcome.error is not None
    assert not outcome.error.retryable and "discard_output" in outcome.error.message
    kept = await registry.execute(_http(f"{base}/big", discard_output=True), CONTEXT)
    assert kept.status == pb.Outcome.SUCCEEDED and kept.output is NO_OUTPUT
    within = await registry.execute(_http(f"{base}/big/60000"), CONTEXT)
    assert within.status == pb.Outcome.SUCCEEDED and len(within.output["a"]) == 60_000


async def test_the_idempotency_key_is_the_same_for_every_attempt_of_a_run(
    registry: ExecutorRegistry, base: str
) -> None:
    SEEN.clear()
    await registry.execute(_http(f"{base}/json"), CONTEXT)
    await registry.execute(
        _http(f"{base}/json"), ExecutionContext(run_id="r-7", attempt=3, job_id="j-1", job_name="job")
    )
    await registry.execute(_http(f"{base}/json", idempotency_key="order-42"), CONTEXT)
    await registry.execute(_http(f"{base}/json", disable_idempotency_key=True), CONTEXT)
    keys = [headers.get("Idempotency-Key") for headers in SEEN]
    assert keys == ["r-7", "r-7", "order-42", None]


async def test_a_shell_process_writes_its_output_to_taskmesh_output(registry: ExecutorRegistry) -> None:
    script = "import json, os; open(os.environ['TASKMESH_OUTPUT'], 'w').write(json.dumps({'path': os.environ['TASKMESH_OUTPUT'], 'n': 7}))"
    outcome = await registry.execute(_shell(script), CONTEXT)
    assert outcome.status == pb.Outcome.SUCCEEDED
    assert outcome.output["n"] == 7
    path = outcome.output["path"]
    assert _gone(path) and _gone(os.path.dirname(path))  # removed after the attempt


def _gone(path: str) -> bool:
    return not os.path.exists(path)


def _shell(script: str) -> job_pb2.Executor:
    return job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=[sys.executable, "-c", script]))


async def test_a_shell_process_that_writes_nothing_has_no_output(registry: ExecutorRegistry) -> None:
    outcome = await registry.execute(_shell("print('hello')"), CONTEXT)
    assert outcome.status == pb.Outcome.SUCCEEDED and outcome.output is NO_OUTPUT


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("import os; open(os.environ['TASKMESH_OUTPUT'], 'w').write('{nope')", "holds no valid JSON"),
        (
            "import os; open(os.environ['TASKMESH_OUTPUT'], 'w').write('\"' + 'x' * 70000 + '\"')",
            "more than 65536 bytes",
        ),
    ],
)
async def test_bad_shell_output_fails_the_attempt_for_good(
    registry: ExecutorRegistry, script: str, problem: str
) -> None:
    outcome = await registry.execute(_shell(script), CONTEXT)
    assert outcome.status == pb.Outcome.FAILED and outcome.error is not None
    assert not outcome.error.retryable and problem in outcome.error.message


async def test_the_shell_process_sees_the_idempotency_key(registry: ExecutorRegistry) -> None:
    script = "import json, os; open(os.environ['TASKMESH_OUTPUT'], 'w').write(json.dumps(os.environ['TASKMESH_IDEMPOTENCY_KEY']))"
    outcome = await registry.execute(_shell(script), CONTEXT)
    assert outcome.output == "r-7"
