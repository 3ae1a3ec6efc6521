"""The worker's side of the output cap (findings 7): lines cut, at most the cap shipped, one
marker line, and a shell process producing far more is drained, not blocked."""

import sys

import pytest

from taskmesh.egress import EgressPolicy
from taskmesh.limits import MAX_LOG_BYTES_PER_ATTEMPT, MAX_LOG_LINE_BYTES
from taskmesh.v1 import job_pb2, worker_service_pb2
from worker.executors.base import ExecutionContext
from worker.executors.registry import ExecutorRegistry
from worker.output import LINE_COST_BYTES, MARKER_ROOM, CappedLog, LineSplitter, cut_line

LOCAL = EgressPolicy(allow_loopback=True)  # the tests' targets listen on loopback


class _Shipped:
    def __init__(self, accept: int = 10**9) -> None:
        self.lines: list[tuple[str, bool]] = []
        self._accept = accept

    def __call__(self, text: str, truncated: bool) -> bool:
        if not truncated and len(self.lines) >= self._accept:
            return False
        self.lines.append((text, truncated))
        return True

    @property
    def size(self) -> int:
        return sum(len(text.encode()) for text, _ in self.lines)


def test_lines_are_cut_at_the_line_limit_never_inside_a_character() -> None:
    assert cut_line("é" * 10, 5) == "éé"
    assert cut_line("short", 5) == "short"
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh\nij") == [b"abcd"]
    assert splitter.feed(b"klmnop\nq\n") == [b"ijkl", b"q"]
    assert splitter.feed(b"tail") == []
    assert splitter.finish() == [b"tail"]


def test_output_past_the_cap_is_one_marker_line_flagged_truncated() -> None:
    shipped = _Shipped()
    log = CappedLog(shipped, cap=1000)
    for _ in range(100):
        log("x" * 99)
    assert log.full
    assert shipped.size <= 1000
    assert sum(1 for _, truncated in shipped.lines if truncated) == 1
    text, truncated = shipped.lines[-1]
    assert truncated and "truncated" in text
    assert len(shipped.lines) - 1 == (1000 - MARKER_ROOM) // (99 + LINE_COST_BYTES)  # all that fitted


def test_a_full_send_buffer_truncates_too_instead_of_losing_lines_silently() -> None:
    shipped = _Shipped(accept=3)
    log = CappedLog(shipped)
    for n in range(10):
        log(f"line {n}")
    assert [t for t, _ in shipped.lines[:3]] == ["line 0", "line 1", "line 2"]
    assert shipped.lines[3][1] and len(shipped.lines) == 4


@pytest.mark.parametrize("line_bytes", [1, 1000, 3 * MAX_LOG_LINE_BYTES])
async def test_a_shell_job_printing_far_more_than_the_cap_ships_at_most_the_cap(line_bytes: int) -> None:
    shipped = _Shipped()
    log = CappedLog(shipped)
    context = ExecutionContext(run_id="r", attempt=1, job_id="j", job_name="n", log=log, log_full=lambda: log.full)
    total = 8 * MAX_LOG_BYTES_PER_ATTEMPT
    code = (
        "import sys\n"
        f"block = (b'y' * {line_bytes - 1} + b'\\n') * max(1, 65536 // {line_bytes})\n"
        f"for _ in range({total} // len(block)):\n"
        "    sys.stdout.buffer.write(block)\n"
        "print('the end')\n"
    )
    spec = job_pb2.ShellExecutor(argv=[sys.executable, "-c", code])
    outcome = await ExecutorRegistry(shell_enabled=True, egress=LOCAL).execute(
        job_pb2.Executor(shell=spec), context
    )
    assert outcome.status == worker_service_pb2.Outcome.SUCCEEDED  # drained to its end
    assert outcome.result is not None and "the end" in outcome.result.shell.output_excerpt
    assert shipped.size <= MAX_LOG_BYTES_PER_ATTEMPT
    assert max(len(t.encode()) for t, _ in shipped.lines) <= MAX_LOG_LINE_BYTES
    assert shipped.lines[-1][1]  # the marker, last
