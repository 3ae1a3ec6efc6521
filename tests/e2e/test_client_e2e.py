"""The Python client against the live mesh: through the gateway and straight to api_server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmesh.client import AlreadyExists, InvalidArgument, NotFound, TaskmeshClient, builders
from taskmesh.launcher import Mesh
from taskmesh.v1 import run_pb2
from tests.e2e.helpers import unique
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
