import time

import jwt
import pytest
from argon2 import extract_parameters

from taskmesh.auth import passwords, permissions
from taskmesh.auth.passwords import PasswordHashing, hash_password, verify_password
from taskmesh.auth.tokens import Principal, TokenCodec, bearer_token
from taskmesh.service_errors import ResourceExhausted, Unauthenticated
from taskmesh.settings import InsecureSettingsError, Settings
from taskmesh.states import Role
from taskmesh.v1 import auth_service_pb2, job_service_pb2, worker_service_pb2

SECRET = "unit-test-secret-unit-test-secret-0123"


def test_tokens_round_trip_with_role() -> None:
    codec = TokenCodec(SECRET, 60)
    issued = codec.issue(Principal("ann", Role.OPERATOR))
    assert issued.expires_in == 60
    assert codec.verify(issued.token) == Principal("ann", Role.OPERATOR)


def test_expired_token_is_rejected() -> None:
    token = jwt.encode(
        {"sub": "ann", "role": "ADMIN", "exp": int(time.time()) - 5, "iss": "taskmesh"}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated, match="expired"):
        TokenCodec(SECRET, 60).verify(token)


def test_token_signed_with_another_secret_is_rejected() -> None:
    issued = TokenCodec("another-secret-another-secret-012345", 60).issue(Principal("ann", Role.ADMIN))
    with pytest.raises(Unauthenticated, match="invalid"):
        TokenCodec(SECRET, 60).verify(issued.token)


def test_unsigned_token_is_rejected() -> None:
    token = jwt.encode(
        {"sub": "ann", "role": "ADMIN", "exp": int(time.time()) + 60, "iss": "taskmesh"}, None, algorithm="none"
    )
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET, 60).verify(token)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "token"])
def test_malformed_authorization_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_passwords_hash_and_verify() -> None:
    hashed = hash_password("correct horse")
    assert hashed != "correct horse"
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong horse")
    assert not verify_password(None, "anything")


def _methods(module: object, service: str) -> list[str]:
    descriptor = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    return [f"/{descriptor.full_name}/{m.name}" for m in descriptor.methods]


def test_every_rpc_is_in_the_permission_table() -> None:
    methods = (
        _methods(job_service_pb2, "JobService")
        + _methods(auth_service_pb2, "AuthService")
        + _methods(worker_service_pb2, "WorkerService")
    )
    for method in methods:
        assert permissions.is_public(method) or method in permissions.PERMISSIONS, method


def test_role_table() -> None:
    create = "/taskmesh.v1.JobService/CreateJob"
    read = "/taskmesh.v1.JobService/GetJob"
    users = "/taskmesh.v1.AuthService/CreateUser"
    connect = "/taskmesh.v1.WorkerService/Connect"
    assert permissions.allowed(read, Role.VIEWER)
    assert not permissions.allowed(create, Role.VIEWER)
    assert permissions.allowed(create, Role.OPERATOR)
    assert not permissions.allowed(users, Role.OPERATOR)
    assert permissions.allowed(users, Role.ADMIN)
    assert permissions.allowed(connect, Role.WORKER)
    assert not permissions.allowed(read, Role.WORKER)
    assert not permissions.allowed(connect, Role.OPERATOR)
    assert not permissions.allowed("/taskmesh.v1.JobService/Unknown", Role.ADMIN)
    assert permissions.is_public("/taskmesh.v1.AuthService/Login")


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(InsecureSettingsError) as caught:
        Settings(environment="production").check_secure()
    assert "TASKMESH_JWT_SECRET" in str(caught.value)
    assert "TASKMESH_ADMIN_PASSWORD" in str(caught.value)
    Settings(environment="development").check_secure()
    Settings(
        environment="production",
        jwt_secret="a-real-secret-that-is-long-enough-1234",
        admin_password="s3cret-admin",
        worker_password="s3cret-worker",
    ).check_secure()


def _signed(claims: dict[str, object]) -> str:
    return jwt.encode(
        {"sub": "ann", "role": "ADMIN", "iss": "taskmesh", "ver": 1, **claims}, SECRET, algorithm="HS256"
    )


def test_token_living_longer_than_the_ttl_is_rejected_even_when_signed() -> None:
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="longer"):
        TokenCodec(SECRET, 60).verify(_signed({"iat": now, "exp": now + 10 * 365 * 86400}))


def test_token_without_issue_time_is_rejected() -> None:
    with pytest.raises(Unauthenticated, match="issue time"):
        TokenCodec(SECRET, 60).verify(_signed({"exp": int(time.time()) + 30}))


def test_token_without_credential_version_is_rejected() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "ann", "role": "ADMIN", "iss": "taskmesh", "iat": now, "exp": now + 30}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated, match="log in again"):
        TokenCodec(SECRET, 60).verify(token)


def test_tokens_carry_the_credential_version() -> None:
    codec = TokenCodec(SECRET, 60)
    assert codec.claims(codec.issue(Principal("ann", Role.OPERATOR), version=42).token).version == 42


async def test_an_unknown_user_is_checked_against_a_hash_with_the_same_parameters() -> None:
    for cost in ({}, {"time_cost": 1, "memory_kib": 1024}):
        hashing = PasswordHashing(threads=1, queue=1, **cost)
        try:
            real = await hashing.hash("x" * 12)
            assert extract_parameters(hashing.parameters_hash()) == extract_parameters(real)
            assert await hashing.verify(real, "x" * 12) and not await hashing.verify(None, "x" * 12)
        finally:
            hashing.close()
    low = passwords.hasher(time_cost=1, memory_kib=1024)
    assert verify_password(hash_password("pw", low), "pw")  # a stored hash verifies at any cost


def test_production_refuses_a_lowered_password_hash_cost() -> None:
    from taskmesh.settings import InsecureSettingsError, Settings

    with pytest.raises(InsecureSettingsError, match="PASSWORD_HASH"):
        Settings(environment="production", password_hash_time_cost=1).check_secure()


async def test_logins_beyond_the_hashing_queue_are_refused_at_once() -> None:
    hashing = PasswordHashing(threads=1, queue=1)
    try:
        async with hashing.slot(), hashing.slot():
            with pytest.raises(ResourceExhausted, match="busy"):
                async with hashing.slot():
                    pass
        async with hashing.slot():  # slots are given back
            assert await hashing.verify(None, "anything") is False
    finally:
        hashing.close()


def test_every_method_says_whether_it_is_audited() -> None:
    """A new RPC must be AUDITED (it changes something) or READ_ONLY; tests/security/
    test_audit_log.py then checks each audited one leaves its rows."""
    table = set(permissions.PERMISSIONS)
    assert table == permissions.AUDITED | permissions.READ_ONLY
    assert not permissions.AUDITED & permissions.READ_ONLY


def test_the_access_methods_are_for_admins_only() -> None:
    for name in (
        "CreateServiceAccount",
        "ListServiceAccounts",
        "DeleteServiceAccount",
        "CreateApiKey",
        "ListApiKeys",
        "RevokeApiKey",
        "ListAuditEvents",
    ):
        method = f"/taskmesh.v1.AuthService/{name}"
        assert permissions.allowed(method, Role.ADMIN), method
        for role in (Role.OPERATOR, Role.VIEWER, Role.WORKER):
            assert not permissions.allowed(method, role), (method, role)
