"""Issue 8, finding 9: failed logins are throttled per username and per client address.

Before: 200 wrong passwords in a row and 600 in parallel were all answered 401, and the right
one then worked. Now, past the limit, every attempt is answered 429 (RESOURCE_EXHAUSTED) with
the wait in the message and a Retry-After header, the right password included, on every
api_server replica (the counters live in PostgreSQL), and forging X-Forwarded-For through the
gateway does not give an attacker new addresses. The tests in this module run in order: the
last one exhausts the address all of them come from.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest

from taskmesh.launcher import Mesh, free_port, wait_serving
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc

USER_LIMIT = 5
ADDRESS_LIMIT = 40
PASSWORD = "the-right-password-1"


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    # Waits long enough that no test can outlast one on a slow machine.
    return {
        "TASKMESH_LOGIN_USER_FAILURES": str(USER_LIMIT),
        "TASKMESH_LOGIN_ADDRESS_FAILURES": str(ADDRESS_LIMIT),
        "TASKMESH_LOGIN_BASE_DELAY_SECONDS": "120",
        "TASKMESH_LOGIN_MAX_DELAY_SECONDS": "600",
    }


@pytest.fixture(scope="module")
def second_replica(mesh: Mesh) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    extra = {"TASKMESH_API_LISTEN": address, "TASKMESH_API_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
    wait_serving(address, process=mesh.start_api_server("api_server-2", extra))
    yield address


def _login(gateway: str, username: str, password: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway}/api/auth/login", json={"username": username, "password": password}, headers=headers, timeout=60
    )


def _grpc_login(address: str, username: str, password: str) -> grpc.RpcError | None:
    with grpc.insecure_channel(address) as channel:
        try:
            auth_service_pb2_grpc.AuthServiceStub(channel).Login(
                auth_service_pb2.LoginRequest(username=username, password=password), timeout=30
            )
        except grpc.RpcError as error:
            return error
    return None


def _create_user(api: httpx.Client, username: str) -> str:
    response = api.post("/api/users", json={"username": username, "password": PASSWORD, "role": "VIEWER"})
    assert response.status_code == 200, response.text
    return username


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert "too many failed logins; retry in" in response.json()["message"]
    assert int(response.headers["retry-after"]) > 0


def test_wrong_passwords_in_a_row_are_throttled_and_then_the_right_one_waits_too(
    gateway: str, api: httpx.Client, second_replica: str
) -> None:
    username = _create_user(api, "victim-serial")
    assert _login(gateway, username, PASSWORD).status_code == 200  # a success costs nothing
    for _ in range(USER_LIMIT):
        assert _login(gateway, username, "wrong-password").status_code == 401
    _assert_throttled(_login(gateway, username, "wrong-password"))
    _assert_throttled(_login(gateway, username, PASSWORD))
    # The other replica shares the counters.
    error = _grpc_login(second_replica, username, PASSWORD)
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry in" in (error.details() or "")
    assert int(dict(error.trailing_metadata())["retry-after"]) > 0
    # Another user (from the same address) is not affected.
    other = _create_user(api, "bystander")
    assert _login(gateway, other, PASSWORD).status_code == 200


def test_parallel_wrong_passwords_cannot_outrun_the_count(gateway: str, api: httpx.Client) -> None:
    username = _create_user(api, "victim-parallel")
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: _login(gateway, username, "wrong").status_code, range(120)))
    assert statuses.count(401) <= USER_LIMIT, statuses
    assert statuses.count(429) == len(statuses) - statuses.count(401), statuses
    _assert_throttled(_login(gateway, username, PASSWORD))


def test_an_unknown_user_is_throttled_like_a_known_one(gateway: str) -> None:
    username = f"ghost-{secrets.token_hex(3)}"
    answers = [_login(gateway, username, "wrong").status_code for _ in range(USER_LIMIT)]
    assert answers == [401] * USER_LIMIT  # the same answer as a wrong password
    _assert_throttled(_login(gateway, username, "wrong"))


def test_forged_forwarded_for_headers_do_not_escape_the_address_limit(gateway: str) -> None:
    """Different usernames (no user limit applies) and a random X-Forwarded-For on each attempt:
    the gateway's own entry names the address, so it is throttled anyway."""
    for attempt in range(ADDRESS_LIMIT + 1):
        forged = {"X-Forwarded-For": f"203.0.113.{attempt % 250}", "X-Envoy-External-Address": "198.51.100.7"}
        response = _login(gateway, f"spray-{attempt}", "wrong", headers=forged)
        if response.status_code == 429:
            break
        assert response.status_code == 401, response.text
    _assert_throttled(response)
    # The address, not only those usernames, must now wait.
    _assert_throttled(_login(gateway, "admin", "admin"))
