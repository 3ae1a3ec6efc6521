"""The guard interceptor on a real in-process gRPC server: auth, roles and error mapping."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio

from taskmesh.auth.credentials import CredentialDirectory, StaticCredentials
from taskmesh.auth.tokens import Principal, TokenCodec
from taskmesh.records import Credential
from taskmesh.rpc.server import build_server
from taskmesh.service_errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from taskmesh.states import Role
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.support import free_port

SECRET = "unit-test-secret-unit-test-secret-0123"


class ScriptedJobs(job_service_pb2_grpc.JobServiceServicer):
    """GetJob raises whatever the request id names."""

    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_pb2.Job:
        errors: dict[str, Exception] = {
            "invalid": InvalidArgument("job.name", "is required"),
            "missing": NotFound("job x not found"),
            "busy": FailedPrecondition("job is paused"),
            "down": Unavailable(),
            "bug": RuntimeError("secret internals"),
        }
        if request.id in errors:
            raise errors[request.id]
        return job_pb2.Job(id=request.id, name="ok")


@pytest.fixture
async def channel() -> AsyncIterator[aio.Channel]:
    address = f"127.0.0.1:{free_port()}"
    built = build_server(
        address,
        TokenCodec(SECRET, 60),
        [
            (
                "taskmesh.v1.JobService",
                lambda s: job_service_pb2_grpc.add_JobServiceServicer_to_server(ScriptedJobs(), s),
            )
        ],
        CredentialDirectory(StaticCredentials(Credential(_tester(role), role, 0) for role in Role)),
    )
    await built.server.start()
    async with aio.insecure_channel(address) as chan:
        yield chan
    await built.server.stop(None)


def _tester(role: Role) -> str:
    return f"tester-{role.value.lower()}"


def _auth(role: Role) -> tuple[tuple[str, str]]:
    token = TokenCodec(SECRET, 60).issue(Principal(_tester(role), role)).token
    return (("authorization", f"Bearer {token}"),)


async def _get(channel: aio.Channel, job_id: str, metadata: Any = None) -> job_pb2.Job:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    return await stub.GetJob(job_service_pb2.GetJobRequest(id=job_id), metadata=metadata)


async def test_no_token_is_unauthenticated(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _get(channel, "fine")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_worker_role_cannot_read_jobs(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _get(channel, "fine", _auth(Role.WORKER))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "WORKER" in (caught.value.details() or "")


async def test_viewer_reads(channel: aio.Channel) -> None:
    assert (await _get(channel, "fine", _auth(Role.VIEWER))).name == "ok"


@pytest.mark.parametrize(
    ("job_id", "code", "detail"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "job.name: is required"),
        ("missing", grpc.StatusCode.NOT_FOUND, "job x not found"),
        ("busy", grpc.StatusCode.FAILED_PRECONDITION, "job is paused"),
        ("down", grpc.StatusCode.UNAVAILABLE, "unavailable"),
    ],
)
async def test_domain_errors_map_to_status_codes(
    channel: aio.Channel, job_id: str, code: grpc.StatusCode, detail: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _get(channel, job_id, _auth(Role.ADMIN))
    assert caught.value.code() == code
    assert detail in (caught.value.details() or "")


async def test_unexpected_errors_are_internal_without_leaking(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _get(channel, "bug", _auth(Role.ADMIN))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in (caught.value.details() or "")
    assert "Exception calling application" not in (caught.value.details() or "")


async def _raw_get(channel: aio.Channel, payload: bytes, metadata: Any = None) -> bytes:
    """GetJob with bytes as they are: identity serializers let a test send what no stub would."""
    call = channel.unary_unary(
        "/taskmesh.v1.JobService/GetJob", request_serializer=None, response_deserializer=None
    )
    response: bytes = await call(payload, metadata=metadata)
    return response


async def test_a_corrupt_message_is_invalid_argument(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _raw_get(channel, b"\x0a\xff\xff\xff", _auth(Role.ADMIN))  # field 1, a length past the end
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request: is not a valid message" in (caught.value.details() or "")


async def test_a_corrupt_message_from_an_anonymous_caller_is_unauthenticated(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _raw_get(channel, b"\x0a\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_utf8_is_invalid_argument(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _raw_get(channel, b"\x0a\x03\xed\xa0\x80", _auth(Role.ADMIN))  # id = a lone surrogate
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_valid_raw_message_is_answered(channel: aio.Channel) -> None:
    answer = await _raw_get(
        channel, job_service_pb2.GetJobRequest(id="fine").SerializeToString(), _auth(Role.ADMIN)
    )
    assert job_pb2.Job.FromString(answer).name == "ok"


async def test_nul_in_any_string_field_is_invalid_argument_naming_it(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _get(channel, "fi\x00ne", _auth(Role.ADMIN))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("id: must not contain NUL")


def test_streamed_requests_have_nul_replaced_not_refused() -> None:
    """Worker reports carry what programs printed: NUL is stored as U+FFFD."""
    from taskmesh.rpc.requests import strict
    from taskmesh.v1 import run_pb2
    from taskmesh.v1 import worker_service_pb2 as pb

    log = pb.AttemptLog(attempt=pb.AttemptRef(run_id="r", attempt=1), lines=[run_pb2.LogLine(text="a\x00b")])
    message = pb.ConnectRequest(logs=pb.AppendLogs(attempts=[log]))
    decode = strict(pb.ConnectRequest.FromString)
    assert decode is not None
    decoded = decode(message.SerializeToString())
    assert decoded.logs.attempts[0].lines[0].text == "a\ufffdb"
    with pytest.raises(InvalidArgument):
        decode(b"\x0a\xff\xff\xff")
