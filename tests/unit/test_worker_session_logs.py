"""What the worker keeps of unsent log lines is bounded, and sent in messages gRPC accepts."""

from taskmesh.records import AttemptRef
from taskmesh.v1 import worker_service_pb2 as pb
from worker import session as session_module
from worker.credentials import TokenSource
from worker.executions import Executions
from worker.session import MAX_LOG_MESSAGE_BYTES, SchedulerSession, _log_batches

REF = AttemptRef("r", 1)


def _session() -> SchedulerSession:
    return SchedulerSession(
        "127.0.0.1:1", TokenSource("127.0.0.1:1", "u", "p"), pb.Hello(worker_id="w"), Executions()
    )


def test_lines_of_one_attempt_share_entries_and_the_marker_flags_them(monkeypatch) -> None:
    monkeypatch.setattr(session_module, "MAX_UNSENT_LOG_LINES", 3)
    session = _session()
    assert all(session.log(REF, f"line {n}") for n in range(3))
    assert not session.log(REF, "one too many")  # the buffer is full: dropped, and said so
    assert session.log(REF, "[truncated]", truncated=True)  # the marker always goes
    entries = session._unsent_logs
    assert len(entries) == 1 and entries[0].truncated
    assert [line.text for line in entries[0].lines] == ["line 0", "line 1", "line 2", "[truncated]"]


def test_big_batches_are_split_into_messages_under_the_limit() -> None:
    session = _session()
    for n in range(40):
        session.log(AttemptRef("r", 1 + n % 2), "x" * 60_000)  # alternating: one entry each
    batches = list(_log_batches(session._unsent_logs))
    assert len(batches) > 1
    assert all(pb.AppendLogs(attempts=batch).ByteSize() <= MAX_LOG_MESSAGE_BYTES + 100 for batch in batches)
    assert sum(len(batch) for batch in batches) == 40
