"""TaskmeshClient against the in-process fake: auth, retries, pagination, streaming, errors."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from taskmesh.client import (
    NO_RETRIES,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    TaskmeshClient,
    Unauthenticated,
    Unavailable,
    builders,
)
from taskmesh.client.errors import DeadlineExceeded, Unimplemented
from taskmesh.v1 import job_service_pb2, run_pb2
from tests.support import free_port
from tests.unit.client_cli.fake import FakeTaskmesh

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02, jitter=0)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeTaskmesh, sleeps: list[float]) -> Iterator[TaskmeshClient]:
    with TaskmeshClient(fake.address, username="admin", password="admin", retry=FAST, sleep=sleeps.append) as c:
        yield c


def test_logs_in_lazily_and_sends_the_token(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    assert fake.state.logins == 0
    job = client.create_job("hello", builders.sleep(1), labels={"team": "data"})
    assert fake.state.logins == 1
    assert client.get_job(job.id).labels == {"team": "data"}
    assert [c.token for c in fake.state.calls] == [None, "token-1", "token-1"]  # Login, CreateJob, GetJob


def test_relogs_in_once_when_the_token_is_refused(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("a")
    client.get_job(job.id)
    fake.revoke_tokens()  # as if the token expired server-side
    assert client.get_job(job.id).id == job.id
    assert fake.state.logins == 2
    assert fake.calls("GetJob")[-1].token == "token-2"


def test_renews_the_token_before_it_expires(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    fake.state.expires_in = 10  # inside the 30 s renewal margin: every call logs in first
    client.list_users()
    client.list_users()
    assert fake.state.logins == 2


def test_a_refused_static_token_is_an_error_not_a_loop(fake: FakeTaskmesh) -> None:
    with (
        TaskmeshClient(fake.address, token="stale", retry=FAST) as client,
        pytest.raises(Unauthenticated) as error,
    ):
        client.list_jobs()
    assert "invalid" in error.value.message
    assert len(fake.calls("ListJobs")) == 1


def test_wrong_password_is_unauthenticated(fake: FakeTaskmesh) -> None:
    with TaskmeshClient(fake.address, retry=FAST) as client, pytest.raises(Unauthenticated, match="wrong"):
        client.login("admin", "nope")


def test_explicit_login_keeps_credentials_for_renewal(fake: FakeTaskmesh) -> None:
    with TaskmeshClient(fake.address, retry=FAST) as client:
        response = client.login("admin", "admin")
        assert response.access_token == "token-1" and client.token == "token-1"
        fake.revoke_tokens()
        client.list_jobs()
    assert fake.state.logins == 2


def test_retries_unavailable_with_growing_backoff(fake: FakeTaskmesh, sleeps: list[float]) -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.01, multiplier=2, max_backoff=1, jitter=0)
    with TaskmeshClient(fake.address, token=fake.token(), retry=policy, sleep=sleeps.append) as client:
        fake.fail("ListJobs", UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
        client.list_jobs()
    assert len(fake.calls("ListJobs")) == 4
    assert sleeps == pytest.approx([0.01, 0.02, 0.04])


def test_gives_up_after_max_attempts(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    fake.fail("GetJob", *[UNAVAILABLE] * 10)
    with pytest.raises(Unavailable):
        client.get_job(fake.add_job("a").id)
    assert len(fake.calls("GetJob")) == FAST.max_attempts


def test_deadline_exceeded_is_retried_for_reads_only(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("a")
    fake.fail("GetJob", grpc.StatusCode.DEADLINE_EXCEEDED)
    assert client.get_job(job.id).id == job.id
    fake.fail("DeleteJob", grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(DeadlineExceeded):
        client.delete_job(job.id)
    assert len(fake.calls("DeleteJob")) == 1


def test_writes_are_retried_on_unavailable(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    fake.fail("CreateJob", UNAVAILABLE)
    assert client.create_job("w", {"noop": {}}).name == "w"
    assert len(fake.calls("CreateJob")) == 2


def test_trigger_sends_a_fresh_key_and_retries_with_the_same_one(
    fake: FakeTaskmesh, client: TaskmeshClient
) -> None:
    job = fake.add_job("t")
    fake.fail("TriggerJob", UNAVAILABLE)
    first = client.trigger_job(job.id)
    second = client.trigger_job(job.id)
    keys = [c.request.idempotency_key for c in fake.calls("TriggerJob")]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert all(len(k) == 32 for k in keys)
    assert first.id != second.id
    assert client.trigger_job(job.id, idempotency_key=keys[2]).id == second.id


def test_trigger_without_a_key_is_never_retried(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("t")
    fake.fail("TriggerJob", UNAVAILABLE)
    with pytest.raises(Unavailable):
        client.trigger_job(job.id, idempotency_key="")
    assert len(fake.calls("TriggerJob")) == 1


def test_retry_run_is_never_retried(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    run = fake.add_run(fake.add_job("t"))
    fake.fail("RetryRun", UNAVAILABLE)
    with pytest.raises(Unavailable):
        client.retry_run(run.id)
    assert len(fake.calls("RetryRun")) == 1


def test_errors_map_to_classes(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    with pytest.raises(InvalidArgument) as invalid:
        client.create_job("", builders.noop())
    assert invalid.value.field == "job.name"
    assert invalid.value.problem == "is required"
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
    client.create_job("dup", builders.noop())
    with pytest.raises(AlreadyExists):
        client.create_job("dup", builders.noop())
    with pytest.raises(NotFound, match="not found"):
        client.get_run("00000000-0000-0000-0000-000000000000")
    done = fake.add_run(fake.add_job("f"), run_pb2.Run.SUCCEEDED)
    with pytest.raises(FailedPrecondition):
        client.cancel_run(done.id)
    fake.fail("PauseJob", grpc.StatusCode.UNIMPLEMENTED)
    with pytest.raises(Unimplemented):
        client.pause_job(done.job_id)


def test_connection_refused_is_unavailable() -> None:
    client = TaskmeshClient(f"127.0.0.1:{free_port()}", token="t", retry=NO_RETRIES)
    with client, pytest.raises(Unavailable) as error:
        client.list_jobs()
    assert error.value.code == UNAVAILABLE


def test_iter_jobs_walks_every_page(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    created = [fake.add_job(f"j{i}", labels={"batch": "x"}) for i in range(5)]
    fake.add_job("other")
    assert [j.id for j in client.iter_jobs(filter="labels.batch=x", page_size=2)] == [j.id for j in created]
    assert [c.request.page_token for c in fake.calls("ListJobs")] == ["", "2", "4"]


def test_iter_runs_of_one_job_is_lazy(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("r")
    runs = [fake.add_run(job) for _ in range(5)]
    fake.add_run(fake.add_job("other"))
    iterator = client.iter_runs(job_id=job.id, page_size=2)
    assert [next(iterator).id for _ in range(2)] == [runs[4].id, runs[3].id]
    assert len(fake.calls("ListRuns")) == 1
    assert [r.id for r in iterator] == [r.id for r in reversed(runs[:3])]


def test_find_job_by_name(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("nightly")
    found = client.find_job("nightly")
    assert found is not None and found.id == job.id
    assert client.find_job("missing") is None


def test_update_job_sends_only_the_given_fields(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("u", description="old", labels={"a": "1"})
    updated = client.update_job(job.id, description="new", schedule=builders.every("30s"))
    request = fake.calls("UpdateJob")[0].request
    assert list(request.update_mask.paths) == ["description", "schedule"]
    assert updated.description == "new" and updated.labels == {"a": "1"}
    assert updated.schedule.interval.every.seconds == 30
    cleared = client.update_job(job.id, clear=["schedule"])
    assert not cleared.HasField("schedule")
    with pytest.raises(ValueError, match="nothing to update"):
        client.update_job(job.id)


def test_create_job_from_json_ignores_output_only_fields(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = client.create_job_from({"id": "x", "name": "j", "executor": {"sleep": {"seconds": 2}}, "paused": True})
    assert job.id != "x" and job.executor.sleep.seconds == 2 and not job.paused


def test_pause_resume_and_skipped_slots(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    job = fake.add_job("p")
    assert client.pause_job(job.id).paused
    assert not client.resume_job(job.id).paused
    fake.state.skipped[job.id] = [
        job_service_pb2.SkippedSlot(reason=job_service_pb2.SkippedSlot.OVERLAP) for _ in range(3)
    ]
    assert len(list(client.iter_skipped_slots(job.id, page_size=2))) == 3


def _state(state: int, attempt: int = 1) -> job_service_pb2.RunEvent:
    return job_service_pb2.RunEvent(run=run_pb2.Run(state=state, attempt=attempt))


def _log(text: str) -> job_service_pb2.RunEvent:
    return job_service_pb2.RunEvent(log=run_pb2.LogLine(attempt=1, text=text))


def test_watch_run_yields_events_until_the_stream_ends(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    run = fake.add_run(fake.add_job("w"), run_pb2.Run.QUEUED)
    fake.script_watch(run.id, _state(run_pb2.Run.QUEUED), _log("hi"), _state(run_pb2.Run.SUCCEEDED))
    events = list(client.watch_run(run.id))
    assert [e.WhichOneof("event") for e in events] == ["run", "log", "run"]
    assert events[-1].run.state == run_pb2.Run.SUCCEEDED


def test_watch_run_reconnects_after_unavailable(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    run = fake.add_run(fake.add_job("w"), run_pb2.Run.QUEUED)
    fake.script_watch(run.id, _state(run_pb2.Run.RUNNING), UNAVAILABLE)
    fake.script_watch(run.id, _state(run_pb2.Run.RUNNING), _state(run_pb2.Run.FAILED))
    states = [e.run.state for e in client.watch_run(run.id)]
    assert states == [run_pb2.Run.RUNNING, run_pb2.Run.RUNNING, run_pb2.Run.FAILED]
    assert len(fake.calls("WatchRun")) == 2


def test_watch_run_raises_mapped_errors(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    with pytest.raises(NotFound):
        list(client.watch_run("00000000-0000-0000-0000-000000000000"))


def test_users_and_logs(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    user = client.create_user("bob", "secret123", "viewer")
    assert user.role == 3
    assert {u.username for u in client.list_users()} == {"admin", "bob"}
    client.delete_user("bob")
    run = fake.add_run(fake.add_job("l"))
    fake.state.logs[run.id] = [run_pb2.LogLine(attempt=1, text="a"), run_pb2.LogLine(attempt=2, text="b")]
    assert [line.text for line in client.list_run_logs(run.id, attempt=2).lines] == ["b"]


def test_run_logs_page_by_page(fake: FakeTaskmesh, client: TaskmeshClient) -> None:
    run = fake.add_run(fake.add_job("l"))
    fake.state.logs[run.id] = [run_pb2.LogLine(attempt=1 + i // 3, text=str(i)) for i in range(6)]
    first = client.list_run_logs(run.id, page_size=4)
    assert [line.text for line in first.lines] == ["0", "1", "2", "3"] and first.next_page_token
    rest = client.list_run_logs(run.id, page_size=4, page_token=first.next_page_token)
    assert [line.text for line in rest.lines] == ["4", "5"] and rest.next_page_token == ""
    assert [line.text for line in client.iter_run_logs(run.id, page_size=2)] == [str(i) for i in range(6)]
    assert [line.text for line in client.iter_run_logs(run.id, attempt=2, page_size=2)] == ["3", "4", "5"]
    requests = [call.request for call in fake.calls("ListRunLogs")[-2:]]
    assert [(r.attempt, r.page_size, bool(r.page_token)) for r in requests] == [(2, 2, False), (2, 2, True)]


def test_client_needs_both_username_and_password() -> None:
    with pytest.raises(ValueError, match="both"):
        TaskmeshClient("127.0.0.1:1", username="admin")
