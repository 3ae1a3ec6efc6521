"""The Python client against the live mesh: through the gateway and straight to api_server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmesh.client import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, TaskmeshClient, builders
from taskmesh.launcher import Mesh
from taskmesh.v1 import job_service_pb2, run_pb2
from tests.e2e.helpers import gated_program, unique
from tests.support import wait_for


@pytest.fixture(params=["gateway", "api_server"])
def client(request: pytest.FixtureRequest, mesh: Mesh, gateway: str) -> Iterator[TaskmeshClient]:
    address = gateway if request.param == "gateway" else mesh.settings.api_address
    with TaskmeshClient(address, username="admin", password="admin") as c:
        yield c


def test_jobs_runs_and_pages(client: TaskmeshClient) -> None:
    marker = unique("client")
    jobs = [client.create_job(f"{marker}-{i}", builders.noop(), labels={"batch": marker}) for i in range(5)]
    listed = list(client.iter_jobs(filter=f"labels.batch={marker}", page_size=2))
    assert [j.id for j in listed] == [j.id for j in jobs]
    found = client.find_job(jobs[3].name)
    assert found is not None and found.id == jobs[3].id

    updated = client.update_job(jobs[0].id, description="changed", executor=builders.sleep(0.05))
    assert updated.description == "changed" and updated.executor.sleep.seconds == 0.05

    runs = [client.trigger_job(jobs[0].id) for _ in range(3)]
    for run in runs:
        wait_for(lambda r=run: client.get_run(r.id).state == run_pb2.Run.SUCCEEDED, timeout=60, interval=0.1)
    assert [r.id for r in client.iter_runs(job_id=jobs[0].id, page_size=2)] == [r.id for r in reversed(runs)]
    assert client.get_job_status(jobs[0].id).last_run.id == runs[-1].id

    client.delete_job(jobs[4].id)
    with pytest.raises(NotFound):
        client.get_job(jobs[4].id)


def test_errors_carry_the_field(client: TaskmeshClient) -> None:
    with pytest.raises(InvalidArgument) as invalid:
        client.create_job("ok-name", builders.http("ftp://nope"))
    assert invalid.value.field == "job.executor.http.url"
    name = unique("dup")
    client.create_job(name, builders.noop())
    with pytest.raises(AlreadyExists):
        client.create_job(name, builders.noop())


def test_watch_run_through_the_gateway(admin_client: TaskmeshClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = admin_client.create_job(unique("client-watch"), builders.shell(gated_program(gate, 3)))
    run = admin_client.trigger_job(job.id)
    events = []
    for event in admin_client.watch_run(run.id):  # native gRPC through Envoy, a stream
        events.append(event)
        if event.WhichOneof("event") == "run" and event.run.state == run_pb2.Run.RUNNING:
            gate.touch()  # the job prints only now: its lines must come through the stream
    runs = [e.run for e in events if e.WhichOneof("event") == "run"]
    assert runs[-1].state == run_pb2.Run.SUCCEEDED and runs[-1].id == run.id
    assert [r.version for r in runs] == sorted({r.version for r in runs})
    assert [e.log.text for e in events if e.WhichOneof("event") == "log"] == [f"line {i}" for i in range(3)]
    assert [line.text for line in admin_client.iter_run_logs(run.id, page_size=2)] == [
        f"line {i}" for i in range(3)
    ]
    finished = list(admin_client.watch_run(run.id))
    assert len(finished) == 1 and finished[0].run.state == run_pb2.Run.SUCCEEDED


def test_idempotent_trigger_cancel_and_retry(admin_client: TaskmeshClient) -> None:
    job = admin_client.create_job(unique("client-cancel"), builders.sleep(60))
    run = admin_client.trigger_job(job.id, idempotency_key="same")
    assert admin_client.trigger_job(job.id, idempotency_key="same").id == run.id
    wait_for(lambda: admin_client.get_run(run.id).state == run_pb2.Run.RUNNING, timeout=60, interval=0.1)
    with pytest.raises(FailedPrecondition):
        admin_client.retry_run(run.id)
    assert admin_client.cancel_run(run.id).state in (run_pb2.Run.CANCELLING, run_pb2.Run.CANCELLED)
    events = list(admin_client.watch_run(run.id))
    assert events[-1].run.state == run_pb2.Run.CANCELLED
    with pytest.raises(FailedPrecondition, match="only active runs can be cancelled"):
        admin_client.cancel_run(run.id)
    retried = admin_client.retry_run(run.id)
    assert (retried.retried_from_run_id, retried.trigger) == (run.id, run_pb2.Run.RETRY)
    admin_client.cancel_run(retried.id)


def test_pause_resume_and_skipped_slots(admin_client: TaskmeshClient) -> None:
    schedule = builders.every("1s", overlap="forbid")
    job = admin_client.create_job(unique("client-forbid"), builders.sleep(60), schedule=schedule)
    try:
        slots = wait_for(
            lambda: list(admin_client.iter_skipped_slots(job.id, page_size=1))[:2] or None,
            timeout=30,
            interval=0.2,
            message="skipped slots",
        )
        assert {s.reason for s in slots} == {job_service_pb2.SkippedSlot.OVERLAP}
        paused = admin_client.pause_job(job.id)
        assert paused.paused and not paused.next_fire_times
        assert admin_client.get_job_status(job.id).schedule_health.paused
        resumed = admin_client.resume_job(job.id)
        assert not resumed.paused and len(resumed.next_fire_times) == 5
    finally:
        admin_client.pause_job(job.id)
        for run in admin_client.iter_runs(job_id=job.id):
            if run.state in (run_pb2.Run.QUEUED, run_pb2.Run.RUNNING):
                admin_client.cancel_run(run.id)
