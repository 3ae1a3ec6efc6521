"""Who may read /actuator/prometheus: the access decision and the actuator's answers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from api_server.actuator import Actuator
from api_server.metrics_access import Access, PrometheusAccess, prometheus_access
from taskmesh.auth.credentials import CredentialDirectory, StaticCredentials
from taskmesh.auth.tokens import Principal, TokenCodec
from taskmesh.health import CheckResult, Snapshot
from taskmesh.records import Credential
from taskmesh.settings import InsecureSettingsError, Settings
from taskmesh.states import Role

SECRET = "a-test-secret-of-more-than-32-characters"
CODEC = TokenCodec(SECRET, 60)
METRICS_TOKEN = "m" * 40
PROTECTED = PrometheusAccess(public=False, metrics_token=METRICS_TOKEN, verify=CODEC.verify)


def _bearer(role: Role) -> str:
    return f"Bearer {CODEC.issue(Principal('someone', role)).token}"


OTHER_SECRET = "another-secret-another-secret-0123456"


@pytest.mark.parametrize(
    ("authorization", "access"),
    [
        (None, Access.UNAUTHENTICATED),
        ("", Access.UNAUTHENTICATED),
        ("Basic YWRtaW46YWRtaW4=", Access.UNAUTHENTICATED),
        ("Bearer not-a-token", Access.UNAUTHENTICATED),
        (f"Bearer {METRICS_TOKEN[:-1]}", Access.UNAUTHENTICATED),
        (f"Bearer {METRICS_TOKEN}", Access.ALLOWED),
    ],
)
def test_protected_metrics_need_a_valid_bearer_token(authorization: str | None, access: Access) -> None:
    assert PROTECTED.check(authorization) is access


@pytest.mark.parametrize(
    ("role", "access"),
    [
        (Role.ADMIN, Access.ALLOWED),
        (Role.OPERATOR, Access.ALLOWED),
        (Role.VIEWER, Access.FORBIDDEN),
        (Role.WORKER, Access.FORBIDDEN),
    ],
)
def test_access_tokens_of_admins_and_operators_may_read_metrics(role: Role, access: Access) -> None:
    assert PROTECTED.check(_bearer(role)) is access


def test_a_token_signed_with_another_secret_is_unauthenticated() -> None:
    forged = TokenCodec(OTHER_SECRET, 60).issue(Principal("a", Role.ADMIN)).token
    assert PROTECTED.check(f"Bearer {forged}") is Access.UNAUTHENTICATED


def test_without_a_metrics_token_only_access_tokens_work() -> None:
    access = PrometheusAccess(public=False, metrics_token="", verify=CODEC.verify)
    assert access.check("Bearer ") is Access.UNAUTHENTICATED
    assert access.check(_bearer(Role.ADMIN)) is Access.ALLOWED


def test_public_metrics_need_nothing() -> None:
    assert PrometheusAccess(public=True, metrics_token="", verify=CODEC.verify).check(None) is Access.ALLOWED


def test_settings_decide_public_by_environment_unless_told() -> None:
    production = {"environment": "production", "jwt_secret": SECRET, "admin_password": "a", "worker_password": "w"}
    users = CredentialDirectory(StaticCredentials([]))
    assert prometheus_access(Settings(), users).public
    assert not prometheus_access(Settings(**production), users).public  # type: ignore[arg-type]
    assert prometheus_access(Settings(actuator_prometheus_public=True, **production), users).public  # type: ignore[arg-type]
    assert not prometheus_access(Settings(actuator_prometheus_public=False), users).public


async def test_a_revoked_users_token_reads_no_metrics() -> None:
    codec = TokenCodec(SECRET, 60)
    users = CredentialDirectory(StaticCredentials([Credential("ops", Role.OPERATOR, 7)]))
    await users.refresh()
    access = prometheus_access(Settings(actuator_prometheus_public=False, jwt_secret=SECRET), users)
    current = codec.issue(Principal("ops", Role.OPERATOR), version=7).token
    revoked = codec.issue(Principal("ops", Role.OPERATOR), version=6).token
    assert access.check(f"Bearer {current}") is Access.ALLOWED
    assert access.check(f"Bearer {revoked}") is Access.UNAUTHENTICATED
    newer = codec.issue(Principal("new-viewer", Role.VIEWER), version=8).token  # not in the map yet
    assert access.check(f"Bearer {newer}") is Access.FORBIDDEN


def test_production_refuses_a_short_metrics_token() -> None:
    production = {"environment": "production", "jwt_secret": SECRET, "admin_password": "a", "worker_password": "w"}
    with pytest.raises(InsecureSettingsError, match="TASKMESH_METRICS_TOKEN"):
        Settings(metrics_token="short", **production).check_secure()  # type: ignore[arg-type]


def _call(app: Actuator, path: str, authorization: str | None = None) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_the_actuator_refuses_anonymous_metrics_but_keeps_health_open() -> None:
    snapshot = Snapshot({"database": CheckResult(True)}, True, time.monotonic())
    scraped: list[str] = []

    def targets() -> list[Any]:
        scraped.append("scheduler")
        return []

    app = Actuator(lambda: snapshot, 10.0, "api:9101", targets, CollectorRegistry(), PROTECTED)
    status, headers, _ = _call(app, "/actuator/prometheus")
    assert status.startswith("401") and headers["WWW-Authenticate"].startswith("Bearer")
    assert _call(app, "/actuator/prometheus", _bearer(Role.VIEWER))[0].startswith("403")
    assert scraped == []  # nothing is scraped for a refused caller
    status, _, body = _call(app, "/actuator/prometheus", _bearer(Role.OPERATOR))
    assert status.startswith("200") and b"taskmesh_aggregate_up" in body
    assert _call(app, "/actuator/prometheus", f"Bearer {METRICS_TOKEN}")[0].startswith("200")
    for path in ("/actuator/health/liveness", "/actuator/health/readiness"):
        assert _call(app, path)[0].startswith("200")
    assert not _call(app, "/actuator/health")[0].startswith("401")
