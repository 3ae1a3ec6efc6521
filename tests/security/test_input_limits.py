"""Findings 5 and 8: no valid request is answered 500, and no invalid one leaves a change.

Large answers come back in pages sized by bytes; sizes of job fields are bounded with
INVALID_ARGUMENT naming the field; strings PostgreSQL cannot store (NUL), ids that are no
canonical UUID and names with a trailing newline are refused with 400 naming the field; a
corrupt protobuf message over native gRPC is INVALID_ARGUMENT."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal

pytestmark = pytest.mark.timeout(300)


def _next_pages(api: httpx.Client, path: str, first: dict[str, Any], key: str, **params: Any) -> list[Any]:
    """Every item of a list, following next_page_token from the first page."""
    items, page = list(first[key]), first
    while page["nextPageToken"]:
        response = api.get(path, params={**params, "pageToken": page["nextPageToken"]})
        assert response.status_code == 200, response.text[:300]
        page = response.json()
        items += page[key]
    return items


def test_a_large_log_comes_back_in_pages(api: httpx.Client) -> None:
    """1 MiB of log lines of control characters (each 6 bytes in JSON) at pageSize=10000."""
    program = "import sys\nfor _ in range(1100):\n    sys.stdout.write('\\x01' * 1000 + '\\n')\n"
    job = create_job(api, "big-log", {"shell": {"argv": [sys.executable, "-c", program]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=120)
    assert run["state"] == "SUCCEEDED", run
    path = f"/api/runs/{run['id']}/logs"
    first = api.get(path, params={"pageSize": 10000})
    assert first.status_code == 200, first.text[:300]
    assert first.json()["nextPageToken"], "a page that large must end early"
    lines = _next_pages(api, path, first.json(), "lines", pageSize=10000)
    # The stored log is capped at 1 MiB per attempt; the worker's marker line ends it.
    *output, marker = lines
    assert 1000 <= len(output) <= 1100
    assert all(line["text"] == "\x01" * 1000 for line in output)
    assert marker["text"].startswith("[taskmesh: output truncated")


def test_a_large_job_list_comes_back_in_pages(api: httpx.Client) -> None:
    prefix = unique("long")
    description = "\x01" * 4096  # the longest description, 6 bytes a character in JSON
    for i in range(300):
        create_job(api, f"{prefix}-{i:03d}", {"noop": {}}, description=description)
    params = {"pageSize": 1000, "filter": f'name:"{prefix}"'}
    first = api.get("/api/jobs", params=params)
    assert first.status_code == 200, first.text[:300]
    assert first.json()["nextPageToken"]
    jobs = _next_pages(api, "/api/jobs", first.json(), "jobs", **params)
    assert len({job["id"] for job in jobs}) == len(jobs) == 300


def _count(api: httpx.Client, name: str) -> int:
    response = api.get("/api/jobs", params={"filter": f'name = "{name}"'})
    assert response.status_code == 200, response.text
    return len(response.json()["jobs"])


def test_a_2mb_argv_is_refused_and_nothing_is_created(api: httpx.Client) -> None:
    name = unique("huge-argv")
    response = api.post(
        "/api/jobs", json={"name": name, "executor": {"shell": {"argv": ["echo", "a" * 2_000_000]}}}
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["message"].startswith("job.executor.shell.argv:")
    assert _count(api, name) == 0
    listed = api.get("/api/jobs", params={"pageSize": 1000})
    assert listed.status_code == 200


def _http(**fields: Any) -> dict[str, Any]:
    return {"http": {"url": "http://127.0.0.1:9/", **fields}}


def _shell(**fields: Any) -> dict[str, Any]:
    return {"shell": {"argv": ["true"], **fields}}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"executor": _shell(argv=["x"] * 1025)}, "job.executor.shell.argv"),
        ({"executor": _shell(env={f"V{i}": "1" for i in range(257)})}, "job.executor.shell.env"),
        ({"executor": _shell(env={"V" * 257: "1"})}, "job.executor.shell.env"),
        ({"executor": _shell(env={"V": "1" * 40_000})}, "job.executor.shell.env.V"),
        ({"executor": _http(url="http://127.0.0.1:9/" + "a" * 9000)}, "job.executor.http.url"),
        ({"executor": _http(headers={f"h{i}": "v" for i in range(65)})}, "job.executor.http.headers"),
        ({"executor": _http(headers={"h" * 300: "v"})}, "job.executor.http.headers"),
        ({"executor": _http(headers={"X-A": "v" * 9000})}, "job.executor.http.headers.X-A"),
        ({"executor": _http(body="b" * ((1 << 20) + 1))}, "job.executor.http.body"),
        ({"executor": {"noop": {}}, "description": "d" * 4097}, "job.description"),
        ({"executor": {"noop": {}}, "labels": {"k": "v" * 257}}, "job.labels.k"),
        ({"executor": {"noop": {}}, "labels": {f"k{i}": "v" for i in range(65)}}, "job.labels"),
    ],
)
def test_oversized_fields_are_refused_naming_them(api: httpx.Client, fields: dict[str, Any], field: str) -> None:
    name = unique("oversized")
    response = api.post("/api/jobs", json={"name": name, **fields})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["message"].startswith(f"{field}:"), response.json()["message"]
    assert _count(api, name) == 0


def test_an_oversized_name_is_refused(api: httpx.Client) -> None:
    response = api.post("/api/jobs", json={"name": "n" * 129, "executor": {"noop": {}}})
    assert response.status_code == 400
    assert response.json()["message"].startswith("job.name:")


def test_requests_over_the_message_limit_are_clear_errors(api: httpx.Client) -> None:
    name = unique("huge-body")
    response = api.post("/api/jobs", json={"name": name, "executor": _http(body="b" * (9 << 20))})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["message"].startswith("job.executor.http.body:")
    # Over the servers' gRPC limit (16 MiB): refused before it is decoded, saying so.
    response = api.post("/api/jobs", json={"name": name, "executor": _http(body="b" * (20 << 20))})
    assert response.status_code == 429, response.text[:300]
    assert "larger than max" in response.json()["message"]
    assert _count(api, name) == 0


@pytest.fixture(scope="module")
def admin_metadata(admin_token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {admin_token}"),)


@pytest.fixture(scope="module", params=["gateway", "api_server"])
def channel(request: pytest.FixtureRequest, mesh: Mesh, gateway: str) -> Iterator[grpc.Channel]:
    """Native gRPC through the gateway and straight to the api_server."""
    address = gateway.removeprefix("http://") if request.param == "gateway" else mesh.settings.api_address
    with grpc.insecure_channel(address) as chan:
        yield chan


def test_a_large_message_over_grpc_is_a_clear_error(
    channel: grpc.Channel, admin_metadata: tuple[tuple[str, str]]
) -> None:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    argv = job_pb2.Job(name=unique("grpc-argv"), executor={"shell": {"argv": ["echo", "a" * 2_000_000]}})
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateJob(job_service_pb2.CreateJobRequest(job=argv), metadata=admin_metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("job.executor.shell.argv:")
    huge = job_pb2.Job(name=unique("grpc-huge"), executor={"http": {"url": "http://x/", "body": "b" * (17 << 20)}})
    with pytest.raises(grpc.RpcError) as too_large:
        stub.CreateJob(job_service_pb2.CreateJobRequest(job=huge), metadata=admin_metadata, timeout=30)
    assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, too_large.value.details()


def test_a_corrupt_protobuf_message_is_invalid_argument(
    channel: grpc.Channel, admin_metadata: tuple[tuple[str, str]]
) -> None:
    call = channel.unary_unary(
        "/taskmesh.v1.JobService/CreateJob", request_serializer=None, response_deserializer=None
    )
    for payload in (b"\x0a\xff\xff\xff\x0f", b"\x0a\x05\x12\x03\xed\xa0\x80", b"\xff"):
        with pytest.raises(grpc.RpcError) as caught:
            call(payload, metadata=admin_metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (payload, caught.value.details())


def test_nul_over_grpc_is_invalid_argument(channel: grpc.Channel, admin_metadata: tuple[tuple[str, str]]) -> None:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    job = job_pb2.Job(name=unique("nul"), description="a\x00b", executor={"noop": {}})
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateJob(job_service_pb2.CreateJobRequest(job=job), metadata=admin_metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("job.description:")


@pytest.fixture(scope="module")
def a_job(api: httpx.Client) -> dict[str, Any]:
    return create_job(api, "target", {"noop": {}})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"description": "a\x00b", "executor": {"noop": {}}}, "job.description"),
        ({"labels": {"team": "a\x00b"}, "executor": {"noop": {}}}, "job.labels.team"),
        ({"executor": _http(headers={"X-A": "a\x00b"})}, "job.executor.http.headers.X-A"),
        ({"executor": _http(body="a\x00b")}, "job.executor.http.body"),
        ({"executor": _shell(env={"A": "a\x00b"})}, "job.executor.shell.env.A"),
        (
            {"executor": {"noop": {}}, "schedule": {"cron": {"expression": "* * * * *", "timezone": "U\x00TC"}}},
            "job.schedule.cron.timezone",
        ),
    ],
)
def test_nul_in_a_job_field_is_400_naming_it(api: httpx.Client, fields: dict[str, Any], field: str) -> None:
    name = unique("nul")
    response = api.post("/api/jobs", json={"name": name, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}:"), response.json()["message"]
    assert _count(api, name) == 0


def test_nul_in_an_update_is_400(api: httpx.Client, a_job: dict[str, Any]) -> None:
    response = api.patch(f"/api/jobs/{a_job['id']}", json={"description": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("job.description:")
    assert api.get(f"/api/jobs/{a_job['id']}").json()["description"] == a_job["description"]


def test_nul_in_an_idempotency_key_is_400(api: httpx.Client, a_job: dict[str, Any]) -> None:
    response = api.post(f"/api/jobs/{a_job['id']}/trigger", json={"idempotencyKey": "k\x00"})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("idempotency_key:")
    runs = api.get(f"/api/jobs/{a_job['id']}/runs").json()["runs"]
    assert runs == []


def test_nul_in_a_filter_is_400(api: httpx.Client) -> None:
    for path in ("/api/jobs", "/api/runs"):
        response = api.get(path, params={"filter": 'name = "a\x00b"'})
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("filter:")


def test_nul_in_a_login_username_is_400(gateway: str) -> None:
    response = httpx.post(f"{gateway}/api/auth/login", json={"username": "ad\x00min", "password": "admin"})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("username:")


def test_nul_in_a_new_user_is_400(api: httpx.Client) -> None:
    response = api.post("/api/users", json={"username": "u\x00", "password": "long-enough-1", "role": "VIEWER"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("username:")


# A fixed UUID: parametrized ids must be the same in every pytest-xdist worker's collection.
_SOME_UUID = uuid.UUID("0b6f5e2a-6c3d-4f1e-9a7b-2d8c4e6f1a3b")


@pytest.mark.parametrize(
    "job_id",
    [
        f"urn:uuid:{_SOME_UUID}",
        f"{{{_SOME_UUID}}}",
        _SOME_UUID.hex,
        f"{_SOME_UUID}%0A",  # a trailing newline
    ],
)
def test_ids_that_are_not_canonical_uuids_are_400(api: httpx.Client, job_id: str) -> None:
    for response in (
        api.get(f"/api/jobs/{job_id}"),
        api.get(f"/api/runs/{job_id}"),
        api.post(f"/api/jobs/{job_id}/trigger"),
        api.delete(f"/api/jobs/{job_id}"),
    ):
        assert response.status_code == 400, (response.request.url, response.text)
        assert response.json()["message"].startswith("id:")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/jobs", {"name": "nightly\n", "executor": {"noop": {}}}, "job.name"),
        ("/api/jobs", {"name": "n", "labels": {"team\n": "x"}, "executor": {"noop": {}}}, "job.labels.team\n"),
        ("/api/jobs", {"name": "n", "executor": _shell(env={"A\n": "1"})}, "job.executor.shell.env"),
        ("/api/jobs", {"name": "n", "executor": _http(headers={"X-A\n": "v"})}, "job.executor.http.headers"),
        ("/api/users", {"username": "bob\n", "password": "long-enough-1", "role": "VIEWER"}, "username"),
    ],
)
def test_a_trailing_newline_is_400(api: httpx.Client, path: str, body: dict[str, Any], field: str) -> None:
    response = api.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}:"), response.json()["message"]


def test_a_program_printing_nul_finishes_and_its_output_is_stored(api: httpx.Client) -> None:
    """What programs print reaches PostgreSQL too (logs, excerpts): NUL is stored as U+FFFD,
    instead of an outcome the scheduler could never record."""
    program = "import sys; sys.stdout.write('a\\x00b\\nafter\\n')"
    job = create_job(api, "prints-nul", {"shell": {"argv": [sys.executable, "-c", program]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=60)
    assert run["state"] == "SUCCEEDED", run
    assert run["result"]["shell"]["outputExcerpt"] == "a\ufffdb\nafter\n"
    lines = api.get(f"/api/runs/{run['id']}/logs").json()["lines"]
    assert [line["text"] for line in lines] == ["a\ufffdb", "after"]
