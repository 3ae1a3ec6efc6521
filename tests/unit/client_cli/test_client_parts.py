"""The client's pure parts: builders, addresses, retry decisions, error parsing, token renewal."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from taskmesh.client import builders
from taskmesh.client.auth import Credentials, IssuedToken, TokenManager
from taskmesh.client.call_retry import CallKind, RetryPolicy, should_retry
from taskmesh.client.channel import Target, parse_address
from taskmesh.client.errors import InvalidArgument, ServerError, from_rpc_error
from taskmesh.v1 import job_pb2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("2h", 7200), ("500ms", 0.5), ("1.5", 1.5), (" 1d ", 86400), (2, 2)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert builders.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "3x", "s", "1m-2s", "1 m"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        builders.parse_duration(text)


def test_timestamps_need_a_zone() -> None:
    assert builders.timestamp("2030-01-01T10:00:00+01:00").ToDatetime(tzinfo=UTC) == datetime(
        2030, 1, 1, 9, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="time zone"):
        builders.timestamp("2030-01-01T10:00:00")
    with pytest.raises(ValueError, match="RFC 3339"):
        builders.timestamp("tomorrow")


def test_schedule_builders_set_the_proto_fields() -> None:
    cron = builders.cron("*/5 * * * *", "Europe/Berlin", misfire="fire-all", overlap="forbid", jitter="10s")
    assert cron.WhichOneof("kind") == "cron" and cron.cron.timezone == "Europe/Berlin"
    assert cron.misfire_policy == job_pb2.Schedule.FIRE_ALL
    assert cron.overlap_policy == job_pb2.Schedule.FORBID
    assert cron.jitter.seconds == 10
    every = builders.every(timedelta(minutes=1), anchor="2030-01-01T00:00:00Z", catch_up_window="2h")
    assert every.interval.every.seconds == 60 and every.interval.anchor_time.seconds > 0
    assert every.catch_up_window.seconds == 7200
    assert builders.once("2030-01-01T00:00:00Z").WhichOneof("kind") == "once"
    with pytest.raises(ValueError, match="fire-once, skip, fire-all"):
        builders.misfire_policy("sometimes")


def test_executor_and_retry_builders() -> None:
    http = builders.http("https://x", method="post", headers={"A": "b"}, timeout="5s")
    assert http.http.method == "POST" and http.http.timeout.seconds == 5
    shell = builders.shell(["echo", "hi"], env={"X": "1"})
    assert list(shell.shell.argv) == ["echo", "hi"]
    policy = builders.retry_policy(max_attempts=5, initial_backoff="2s", non_retryable_exit_codes=[3])
    assert policy.max_attempts == 5 and policy.initial_backoff.seconds == 2
    assert list(policy.non_retryable_exit_codes) == [3]


def test_message_accepts_json_forms_and_names_bad_ones() -> None:
    assert builders.message({"sleep": {"seconds": 1}}, job_pb2.Executor).sleep.seconds == 1
    with pytest.raises(ValueError, match="invalid Executor"):
        builders.message({"sleeep": {}}, job_pb2.Executor)
    with pytest.raises(ValueError, match="expected a Executor"):
        builders.message("noop", job_pb2.Executor)


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("127.0.0.1:8080", Target("127.0.0.1:8080", False)),
        ("http://127.0.0.1:8080", Target("127.0.0.1:8080", False)),
        ("http://gw/", Target("gw:80", False)),
        ("https://taskmesh.example.com", Target("taskmesh.example.com:443", True)),
        ("http://[::1]:9", Target("[::1]:9", False)),
    ],
)
def test_parse_address(address: str, target: Target) -> None:
    assert parse_address(address) == target


@pytest.mark.parametrize("address", ["", "ftp://x", "http://x/api"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


def test_backoff_grows_to_the_cap_within_jitter() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=1, jitter=0.2)
    rng = random.Random(7)
    for retry, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        assert base * 0.8 <= policy.delay(retry, rng) <= base * 1.2
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("kind", "code", "retried"),
    [
        (CallKind.READ, grpc.StatusCode.UNAVAILABLE, True),
        (CallKind.READ, grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (CallKind.WRITE, grpc.StatusCode.UNAVAILABLE, True),
        (CallKind.WRITE, grpc.StatusCode.DEADLINE_EXCEEDED, False),
        (CallKind.UNSAFE, grpc.StatusCode.UNAVAILABLE, False),
        (CallKind.READ, grpc.StatusCode.NOT_FOUND, False),
        (CallKind.READ, grpc.StatusCode.INTERNAL, False),
    ],
)
def test_should_retry(kind: CallKind, code: grpc.StatusCode, retried: bool) -> None:
    assert should_retry(kind, code, 1, RetryPolicy()) is retried
    assert not should_retry(kind, code, RetryPolicy().max_attempts, RetryPolicy())


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_from_rpc_error() -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "job.executor.http.url: is required"))
    assert isinstance(error, InvalidArgument) and error.field == "job.executor.http.url"
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: bad"))
    assert isinstance(plain, InvalidArgument) and plain.field is None and plain.problem == "malformed request: bad"
    internal = from_rpc_error(FakeRpcError(grpc.StatusCode.DATA_LOSS, ""))
    assert isinstance(internal, ServerError) and internal.message == "data loss"
    assert internal.code == grpc.StatusCode.DATA_LOSS


def test_token_manager_renews_near_expiry_and_after_refusal() -> None:
    now = [0.0]
    issued: list[str] = []

    def login(credentials: Credentials) -> IssuedToken:
        issued.append(f"t{len(issued) + 1}")
        return IssuedToken(issued[-1], 100)

    tokens = TokenManager(None, Credentials("u", "p"), login, renew_margin=10, clock=lambda: now[0])
    assert tokens.current() == "t1"
    now[0] = 89
    assert tokens.current() == "t1"
    now[0] = 91
    assert tokens.current() == "t2"
    assert tokens.renew("t2") and tokens.current() == "t3"
    assert tokens.renew("t2") and issued == ["t1", "t2", "t3"]  # already renewed by someone else
    assert not TokenManager("static", None, login).renew("static")
