"""Executors run for real here (subprocesses, a local HTTP server); no Taskmesh services."""

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from google.protobuf.duration_pb2 import Duration

from taskmesh.egress import EgressPolicy
from taskmesh.v1 import job_pb2, run_pb2, worker_service_pb2
from worker.executors.base import ExecutionContext
from worker.executors.registry import ExecutorRegistry

# The test servers listen on loopback.
LOCAL = EgressPolicy(allow_loopback=True)
CONTEXT = ExecutionContext(run_id="r-1", attempt=2, job_id="j-1", job_name="job", kill_grace_seconds=0.5)

SUCCEEDED = worker_service_pb2.Outcome.SUCCEEDED
FAILED = worker_service_pb2.Outcome.FAILED


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/") or 200)
        body = b"x" * 10_000 if status == 200 else b"nope"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        echoed = b"|".join(
            [self.rfile.read(length)]
            + [
                (self.headers.get(h) or "").encode()
                for h in ("X-Token", "X-Taskmesh-Run-Id", "X-Taskmesh-Attempt")
            ]
        )
        self.send_response(201)
        self.send_header("Content-Length", str(len(echoed)))
        self.end_headers()
        self.wfile.write(echoed)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def registry() -> ExecutorRegistry:
    return ExecutorRegistry(shell_enabled=True, egress=LOCAL)


async def test_noop_and_sleep(registry: ExecutorRegistry) -> None:
    assert (await registry.execute(job_pb2.Executor(noop=job_pb2.NoopExecutor()), CONTEXT)).status == SUCCEEDED
    started = time.monotonic()
    outcome = await registry.execute(job_pb2.Executor(sleep=job_pb2.SleepExecutor(seconds=0.2)), CONTEXT)
    assert outcome.status == SUCCEEDED
    assert time.monotonic() - started >= 0.2


async def test_http_success_keeps_status_and_excerpt(registry: ExecutorRegistry, http_base: str) -> None:
    outcome = await registry.execute(job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"{http_base}/200")), CONTEXT)
    assert outcome.status == SUCCEEDED
    assert outcome.result is not None
    assert outcome.result.http.status_code == 200
    assert len(outcome.result.http.body_excerpt) == 4096


async def test_http_post_sends_body_and_headers(registry: ExecutorRegistry, http_base: str) -> None:
    spec = job_pb2.HttpExecutor(method="POST", url=f"{http_base}/", body="hello", headers={"X-Token": "t1"})
    outcome = await registry.execute(job_pb2.Executor(http=spec), CONTEXT)
    assert outcome.status == SUCCEEDED
    assert outcome.result is not None and outcome.result.http.body_excerpt == "hello|t1|r-1|2"


async def test_http_failure_status_is_a_failure_with_result(registry: ExecutorRegistry, http_base: str) -> None:
    outcome = await registry.execute(job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"{http_base}/404")), CONTEXT)
    assert outcome.status == FAILED
    assert outcome.error is not None and outcome.error.message == "HTTP 404"
    assert not outcome.error.retryable
    assert outcome.result is not None and outcome.result.http.status_code == 404
    outcome = await registry.execute(job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"{http_base}/503")), CONTEXT)
    assert outcome.error is not None and outcome.error.retryable


async def test_http_connection_refused_is_a_failure(registry: ExecutorRegistry) -> None:
    outcome = await registry.execute(
        job_pb2.Executor(http=job_pb2.HttpExecutor(url="http://127.0.0.1:1/")), CONTEXT
    )
    assert outcome.status == FAILED
    assert outcome.error is not None and "request failed" in outcome.error.message


async def test_shell_runs_argv_without_a_shell(registry: ExecutorRegistry) -> None:
    spec = job_pb2.ShellExecutor(argv=["echo", "$HOME; rm -rf /"], env={"UNUSED": "1"})
    outcome = await registry.execute(job_pb2.Executor(shell=spec), CONTEXT)
    assert outcome.status == SUCCEEDED
    assert outcome.result is not None
    assert outcome.result.shell.exit_code == 0
    assert outcome.result.shell.output_excerpt == "$HOME; rm -rf /\n"


async def test_shell_env_and_nonzero_exit(registry: ExecutorRegistry) -> None:
    spec = job_pb2.ShellExecutor(argv=["sh", "-c", 'echo "$GREETING"; exit 3'], env={"GREETING": "hi"})
    outcome = await registry.execute(job_pb2.Executor(shell=spec), CONTEXT)
    assert outcome.status == FAILED
    assert outcome.result is not None
    assert outcome.result.shell.exit_code == 3
    assert outcome.result.shell.output_excerpt == "hi\n"
    assert outcome.error is not None and "code 3" in outcome.error.message


async def test_shell_missing_program_is_not_retryable(registry: ExecutorRegistry) -> None:
    spec = job_pb2.ShellExecutor(argv=["/no/such/program"])
    outcome = await registry.execute(job_pb2.Executor(shell=spec), CONTEXT)
    assert outcome.status == FAILED
    assert outcome.error is not None and not outcome.error.retryable


async def test_shell_timeout_kills_the_process_group(registry: ExecutorRegistry) -> None:
    spec = job_pb2.ShellExecutor(argv=["sh", "-c", "sleep 30 & sleep 30"], timeout=Duration(nanos=300_000_000))
    started = time.monotonic()
    outcome = await registry.execute(job_pb2.Executor(shell=spec), CONTEXT)
    assert time.monotonic() - started < 5
    assert outcome.status == FAILED
    assert outcome.error is not None and outcome.error.kind == run_pb2.RunError.TIMEOUT


async def test_shell_disabled_by_default() -> None:
    registry = ExecutorRegistry(shell_enabled=False, egress=LOCAL)
    assert "shell" not in registry.kinds
    outcome = await registry.execute(job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=["true"])), CONTEXT)
    assert outcome.status == FAILED
    assert outcome.error is not None
    assert outcome.error.kind == run_pb2.RunError.UNSUPPORTED and not outcome.error.retryable


async def test_shell_sees_its_identity_and_streams_lines_to_the_log(registry: ExecutorRegistry) -> None:
    lines: list[str] = []
    context = ExecutionContext(run_id="r-9", attempt=3, job_id="j-9", job_name="nine", log=lines.append)
    spec = job_pb2.ShellExecutor(
        argv=["sh", "-c", 'echo "$TASKMESH_RUN_ID/$TASKMESH_ATTEMPT/$TASKMESH_JOB_NAME"; echo two']
    )
    outcome = await registry.execute(job_pb2.Executor(shell=spec), context)
    assert outcome.status == SUCCEEDED
    assert lines == ["r-9/3/nine", "two"]


async def test_http_logs_request_and_response(registry: ExecutorRegistry, http_base: str) -> None:
    lines: list[str] = []
    context = ExecutionContext(run_id="r", attempt=1, job_id="j", job_name="n", log=lines.append)
    await registry.execute(job_pb2.Executor(http=job_pb2.HttpExecutor(url=f"{http_base}/200")), context)
    assert lines[0] == f"GET {http_base}/200"
    assert lines[1].startswith("HTTP 200 OK in ")


async def test_shell_ignoring_term_is_killed_after_the_grace_period(registry: ExecutorRegistry, tmp_path) -> None:
    started = tmp_path / "started"
    script = f"trap '' TERM; touch {started}; sleep 30"
    spec = job_pb2.ShellExecutor(argv=["sh", "-c", script], timeout=Duration(seconds=1))
    begin = time.monotonic()
    outcome = await registry.execute(job_pb2.Executor(shell=spec), CONTEXT)  # grace 0.5 s
    elapsed = time.monotonic() - begin
    assert started.exists()
    assert outcome.error is not None and outcome.error.kind == run_pb2.RunError.TIMEOUT
    assert elapsed < 5  # KILL came after the grace period, not after sleep 30


async def test_cancelling_a_shell_attempt_kills_its_process_group(registry: ExecutorRegistry) -> None:
    pids: list[str] = []
    printed = asyncio.Event()

    def on_line(line: str) -> None:
        pids.append(line)
        printed.set()

    context = ExecutionContext(
        run_id="r", attempt=1, job_id="j", job_name="n", log=on_line, kill_grace_seconds=0.5
    )
    spec = job_pb2.ShellExecutor(argv=["sh", "-c", "sleep 30 & echo $!; wait"])
    task = asyncio.create_task(registry.execute(job_pb2.Executor(shell=spec), context))
    await asyncio.wait_for(printed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(int(pids[0]))  # the background grandchild is gone too


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie waits for a reaper, it is not running
    except FileNotFoundError:
        return False
