"""Issue 14, item 6: the audit log, against a real mesh.

Every method the permission table calls AUDITED leaves a row per call (who, role, method,
resource, request id, outcome, time), written in the transaction of its change; refusals too.
The list of methods comes from the table, so a new mutating RPC fails these tests until it is
audited and has a case below. No secret ever reaches the table.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import descriptor_pool, message_factory

from taskmesh.auth import permissions
from taskmesh.launcher import Mesh
from taskmesh.v1 import (  # noqa: F401  (registers the services)
    auth_service_pb2,
    job_service_pb2,
    notification_service_pb2,
    secret_service_pb2,
)
from tests.security.conftest import login
from tests.support import wait_for

PASSWORD = "a-long-password-1"


@pytest.fixture(scope="module")
def db(mesh: Mesh) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(mesh.settings.database_url.replace("+psycopg", ""), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def viewer_token(gateway: str, api: httpx.Client) -> str:
    response = api.post("/api/users", json={"username": "auditee-viewer", "password": PASSWORD, "role": "VIEWER"})
    assert response.status_code == 200, response.text
    return login(gateway, "auditee-viewer", PASSWORD)


def _request_type(method: str) -> Any:
    service, name = method.lstrip("/").rsplit("/", 1)
    found = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    return (
        message_factory.GetMessageClass(found.input_type),
        message_factory.GetMessageClass(found.output_type),
    )


def _call(address: str, method: str, token: str | None, request: Any = None) -> tuple[grpc.StatusCode, str]:
    """Call `method` with a request (default: an empty one); returns the code and the request id sent."""
    request_type, response_type = _request_type(method)
    request_id = f"audit-{uuid.uuid4()}"
    metadata = [("x-request-id", request_id)]
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            method,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            stub(request if request is not None else request_type(), metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code(), request_id
    return grpc.StatusCode.OK, request_id


def _rows(db: psycopg.Connection[Any], where: str, *params: Any) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return list(
            cursor.execute(f"SELECT *, xmin::text AS xid FROM audit_events WHERE {where} ORDER BY id", params)
        )


VALID_WHEN_EMPTY = frozenset({"/taskmesh.v1.SecretService/RotateSecrets"})


@pytest.mark.parametrize("method", sorted(permissions.AUDITED))
def test_every_audited_method_records_its_refusals(
    method: str, mesh: Mesh, admin_token: str, viewer_token: str, db: psycopg.Connection[Any]
) -> None:
    address = mesh.settings.api_address
    # An empty request: the admin's call is refused as invalid (or not found), and recorded
    # (RotateSecrets takes no argument: it succeeds, and is recorded as such).
    code, request_id = _call(address, method, admin_token)
    assert (code == grpc.StatusCode.OK) == (method in VALID_WHEN_EMPTY)
    [row] = _rows(db, "request_id = %s", request_id)
    assert (row["actor"], row["role"], row["method"], row["outcome"]) == ("admin", "ADMIN", method, code.name)
    # A viewer: PERMISSION_DENIED, recorded with who it was.
    code, request_id = _call(address, method, viewer_token)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    [row] = _rows(db, "request_id = %s", request_id)
    assert (row["actor"], row["role"], row["outcome"]) == ("auditee-viewer", "VIEWER", "PERMISSION_DENIED")
    # Nobody: UNAUTHENTICATED, recorded as anonymous.
    code, request_id = _call(address, method, None)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    [row] = _rows(db, "request_id = %s", request_id)
    assert (row["actor"], row["outcome"]) == ("anonymous", "UNAUTHENTICATED")


# A successful call of each audited method, made through the gateway; returns the resource its
# audit row must name. Keys must be exactly permissions.AUDITED (checked below).
Case = Callable[[httpx.Client, dict[str, Any]], str]


def _job(api: httpx.Client, state: dict[str, Any]) -> str:
    if "job" not in state:
        response = api.post(
            "/api/jobs", json={"name": f"audited-{uuid.uuid4().hex[:8]}", "executor": {"noop": {}}}
        )
        assert response.status_code == 200, response.text
        state["job"] = response.json()["id"]
    return str(state["job"])


def _ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def _create_job(api: httpx.Client, state: dict[str, Any]) -> str:
    return f"jobs/{_job(api, state)}"


def _update_job(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _job(api, state)
    _ok(api.patch(f"/api/jobs/{job}", json={"description": "changed"}))
    return f"jobs/{job}"


def _trigger(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _job(api, state)
    state["run"] = _ok(api.post(f"/api/jobs/{job}/trigger", json={})).json()["id"]
    return f"jobs/{job}"


def _batch(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _job(api, state)
    _ok(api.post("/api/jobs:batchTrigger", json={"requests": [{"id": job}] * 5}))
    return f"jobs/{job}"


def _pause(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _job(api, state)
    _ok(api.post(f"/api/jobs/{job}:pause", json={}))
    return f"jobs/{job}"


def _resume(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _job(api, state)
    _ok(api.post(f"/api/jobs/{job}:resume", json={}))
    return f"jobs/{job}"


def _cancel(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _ok(
        api.post(
            "/api/jobs", json={"name": f"slow-{uuid.uuid4().hex[:8]}", "executor": {"sleep": {"seconds": 30}}}
        )
    )
    run = _ok(api.post(f"/api/jobs/{job.json()['id']}/trigger", json={})).json()["id"]
    _ok(api.post(f"/api/runs/{run}:cancel", json={}))
    return f"runs/{run}"


def _retry(api: httpx.Client, state: dict[str, Any]) -> str:
    _trigger(api, state)
    run = state["run"]
    wait_for(lambda: api.get(f"/api/runs/{run}").json()["state"] == "SUCCEEDED", timeout=30, message="the run")
    _ok(api.post(f"/api/runs/{run}:retry", json={}))
    return f"runs/{run}"


def _delete_job(api: httpx.Client, state: dict[str, Any]) -> str:
    job = _ok(api.post("/api/jobs", json={"name": f"doomed-{uuid.uuid4().hex[:8]}", "executor": {"noop": {}}}))
    _ok(api.delete(f"/api/jobs/{job.json()['id']}"))
    return f"jobs/{job.json()['id']}"


def _create_user(api: httpx.Client, state: dict[str, Any]) -> str:
    state["user"] = f"u-{uuid.uuid4().hex[:8]}"
    _ok(api.post("/api/users", json={"username": state["user"], "password": PASSWORD, "role": "VIEWER"}))
    return f"users/{state['user']}"


def _update_user(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_user(api, state)
    _ok(api.patch(f"/api/users/{state['user']}", json={"role": "OPERATOR"}))
    return f"users/{state['user']}"


def _delete_user(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_user(api, state)
    _ok(api.delete(f"/api/users/{state['user']}"))
    return f"users/{state['user']}"


def _create_account(api: httpx.Client, state: dict[str, Any]) -> str:
    state["account"] = f"sa-{uuid.uuid4().hex[:8]}"
    _ok(api.post("/api/service-accounts", json={"name": state["account"], "role": "VIEWER"}))
    return f"users/{state['account']}"


def _delete_account(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_account(api, state)
    _ok(api.delete(f"/api/service-accounts/{state['account']}"))
    return f"users/{state['account']}"


def _create_key(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_account(api, state)
    key = _ok(api.post(f"/api/service-accounts/{state['account']}/keys", json={"name": "k"})).json()
    state["key_id"] = key["apiKey"]["id"]
    return f"apiKeys/{state['key_id']}"


def _revoke_key(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_key(api, state)
    _ok(api.delete(f"/api/service-accounts/{state['account']}/keys/{state['key_id']}"))
    return f"apiKeys/{state['key_id']}"


# NotificationService and SecretService: like the others, their repositories write the row in
# the change's statement, naming the resource from the database (a created channel by its id).
def _create_channel(api: httpx.Client, state: dict[str, Any]) -> str:
    name = f"hook-{uuid.uuid4().hex[:8]}"
    channel = _ok(
        api.post(
            "/api/notification-channels",
            json={"name": name, "url": "http://127.0.0.1:9/hook", "secret": "hook-secret-0123456789"},
        )
    )
    state["channel"] = channel.json()["id"]
    return f"notificationChannels/{state['channel']}"


def _update_channel(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_channel(api, state)
    _ok(
        api.patch(
            f"/api/notification-channels/{state['channel']}",
            json={"description": "changed"},
            params={"updateMask": "description"},
        )
    )
    return f"notificationChannels/{state['channel']}"


def _delete_channel(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_channel(api, state)
    _ok(api.delete(f"/api/notification-channels/{state['channel']}"))
    return f"notificationChannels/{state['channel']}"


def _test_channel(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_channel(api, state)
    _ok(api.post(f"/api/notification-channels/{state['channel']}:test", json={}))
    return f"notificationChannels/{state['channel']}"


def _create_rule(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_channel(api, state)
    name = f"rule-{uuid.uuid4().hex[:8]}"
    rule = _ok(
        api.post(
            "/api/notification-rules",
            json={
                "name": name,
                "channelId": state["channel"],
                "jobId": _job(api, state),
                "events": ["RUN_FAILED"],
            },
        )
    )
    state["rule"] = rule.json()["id"]
    return f"notificationRules/{state['rule']}"


def _update_rule(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_rule(api, state)
    _ok(
        api.patch(
            f"/api/notification-rules/{state['rule']}",
            json={"events": ["RUN_FAILED", "RUN_FINISHED"]},
            params={"updateMask": "events"},
        )
    )
    return f"notificationRules/{state['rule']}"


def _delete_rule(api: httpx.Client, state: dict[str, Any]) -> str:
    _create_rule(api, state)
    _ok(api.delete(f"/api/notification-rules/{state['rule']}"))
    return f"notificationRules/{state['rule']}"


def _create_secret(api: httpx.Client, state: dict[str, Any]) -> str:
    state["secret"] = f"AUDIT_{uuid.uuid4().hex[:8].upper()}"
    _ok(api.post("/api/secrets", json={"name": state["secret"], "value": "audited-secret-value-1"}))
    return f"secrets/{state['secret']}"


def _update_secret(api: httpx.Client, state: dict[str, Any]) -> str:
    if "secret" not in state:
        _create_secret(api, state)
    _ok(api.patch(f"/api/secrets/{state['secret']}", json={"value": "audited-secret-value-2"}))
    return f"secrets/{state['secret']}"


def _delete_secret(api: httpx.Client, state: dict[str, Any]) -> str:
    if "secret" not in state:
        _create_secret(api, state)
    _ok(api.delete(f"/api/secrets/{state['secret']}"))
    return f"secrets/{state['secret']}"


def _rotate_secrets(api: httpx.Client, state: dict[str, Any]) -> str:
    _ok(api.post("/api/secrets:rotate", json={}))
    return ""


SUCCESSES: dict[str, Case] = {
    "/taskmesh.v1.JobService/CreateJob": _create_job,
    "/taskmesh.v1.JobService/UpdateJob": _update_job,
    "/taskmesh.v1.JobService/DeleteJob": _delete_job,
    "/taskmesh.v1.JobService/TriggerJob": _trigger,
    "/taskmesh.v1.JobService/BatchTriggerJobs": _batch,
    "/taskmesh.v1.JobService/PauseJob": _pause,
    "/taskmesh.v1.JobService/ResumeJob": _resume,
    "/taskmesh.v1.JobService/CancelRun": _cancel,
    "/taskmesh.v1.JobService/RetryRun": _retry,
    "/taskmesh.v1.AuthService/CreateUser": _create_user,
    "/taskmesh.v1.AuthService/UpdateUser": _update_user,
    "/taskmesh.v1.AuthService/DeleteUser": _delete_user,
    "/taskmesh.v1.AuthService/CreateServiceAccount": _create_account,
    "/taskmesh.v1.AuthService/DeleteServiceAccount": _delete_account,
    "/taskmesh.v1.AuthService/CreateApiKey": _create_key,
    "/taskmesh.v1.AuthService/RevokeApiKey": _revoke_key,
    "/taskmesh.v1.NotificationService/CreateNotificationChannel": _create_channel,
    "/taskmesh.v1.NotificationService/UpdateNotificationChannel": _update_channel,
    "/taskmesh.v1.NotificationService/DeleteNotificationChannel": _delete_channel,
    "/taskmesh.v1.NotificationService/TestNotificationChannel": _test_channel,
    "/taskmesh.v1.NotificationService/CreateNotificationRule": _create_rule,
    "/taskmesh.v1.NotificationService/UpdateNotificationRule": _update_rule,
    "/taskmesh.v1.NotificationService/DeleteNotificationRule": _delete_rule,
    "/taskmesh.v1.SecretService/CreateSecret": _create_secret,
    "/taskmesh.v1.SecretService/UpdateSecret": _update_secret,
    "/taskmesh.v1.SecretService/DeleteSecret": _delete_secret,
    "/taskmesh.v1.SecretService/RotateSecrets": _rotate_secrets,
}


def test_every_audited_method_has_a_success_case() -> None:
    assert set(SUCCESSES) == set(permissions.AUDITED)


@pytest.mark.parametrize("method", sorted(permissions.AUDITED))
def test_every_audited_method_records_its_success(
    method: str, api: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    before = _rows(db, "true")[-1]["id"] if _rows(db, "true") else 0
    resource = SUCCESSES[method](api, {})
    # exactly one row, the success: no refusal row beside it, no second row from the guard
    rows = _rows(db, "id > %s AND method = %s", before, method)
    assert [(r["resource"], r["outcome"]) for r in rows] == [(resource, "OK")], rows
    [row] = rows
    assert (row["actor"], row["role"]) == ("admin", "ADMIN")
    assert row["request_id"], "the gateway's x-request-id"
    assert row["time"] > datetime.now(UTC) - timedelta(minutes=5)


def test_a_change_and_its_audit_row_are_one_transaction(api: httpx.Client, db: psycopg.Connection[Any]) -> None:
    """The job row and its CreateJob audit row were written by the same transaction (xmin);
    tests/integration/test_audit_repository.py checks the same of runs, users and keys."""
    state: dict[str, Any] = {}
    job = _job(api, state)
    [created] = _rows(db, "resource = %s AND method = %s", f"jobs/{job}", "/taskmesh.v1.JobService/CreateJob")
    job_xid = db.execute("SELECT xmin::text FROM jobs WHERE id = %s", (job,)).fetchone()
    assert job_xid is not None and created["xid"] == job_xid[0]


def test_a_batch_is_one_row_and_an_idempotent_repeat_is_recorded(
    api: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    state: dict[str, Any] = {}
    job = _job(api, state)
    other = _ok(api.post("/api/jobs", json={"name": f"other-{uuid.uuid4().hex[:8]}", "executor": {"noop": {}}}))
    other_id = other.json()["id"]
    requests = [{"id": job}] * 50 + [{"id": other_id}] * 50
    _ok(api.post("/api/jobs:batchTrigger", json={"requests": requests}))
    [row] = _rows(
        db,
        "method = %s AND resource = 'jobs' AND detail->'jobs' ? %s",
        "/taskmesh.v1.JobService/BatchTriggerJobs",
        job,
    )
    assert row["detail"]["triggers"] == 100 and sorted(row["detail"]["jobs"]) == sorted([job, other_id])
    # A repeat with the same idempotency key returns the same run: still a call, still recorded.
    for _ in range(2):
        _ok(api.post(f"/api/jobs/{job}/trigger", json={"idempotencyKey": "same-key"}))
    rows = _rows(db, "method = %s AND resource = %s", "/taskmesh.v1.JobService/TriggerJob", f"jobs/{job}")
    assert len(rows) == 2 and all(r["outcome"] == "OK" for r in rows)


def test_list_audit_events_filters_and_pages(
    gateway: str, api: httpx.Client, viewer_token: str, db: psycopg.Connection[Any]
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    state: dict[str, Any] = {}
    resource = _create_job(api, state)
    for _ in range(3):
        _update_job(api, state)
    events = _ok(api.get("/api/audit-events", params={"resource": resource})).json()["events"]
    assert [e["method"].rsplit("/", 1)[-1] for e in events] == ["UpdateJob"] * 3 + ["CreateJob"]
    assert all(e["actor"] == "admin" and e["outcome"] == "OK" for e in events)
    # Paging, newest first, the filter kept.
    first = _ok(api.get("/api/audit-events", params={"resource": resource, "pageSize": 3})).json()
    assert len(first["events"]) == 3 and first["nextPageToken"]
    second = _ok(
        api.get(
            "/api/audit-events", params={"resource": resource, "pageSize": 3, "pageToken": first["nextPageToken"]}
        )
    ).json()
    assert [e["id"] for e in first["events"] + second["events"]] == [e["id"] for e in events]
    assert not second.get("nextPageToken")
    # A token is for the filters it was made with.
    other = api.get("/api/audit-events", params={"actor": "admin", "pageToken": first["nextPageToken"]})
    assert other.status_code == 400
    # Actor and time range.
    httpx.post(
        f"{gateway}/api/jobs",
        json={"name": "x", "executor": {"noop": {}}},
        headers={"Authorization": f"Bearer {viewer_token}"},
    )
    mine = _ok(api.get("/api/audit-events", params={"actor": "auditee-viewer"})).json()["events"]
    assert mine and all(e["actor"] == "auditee-viewer" for e in mine)
    assert mine[0]["outcome"] == "PERMISSION_DENIED" and mine[0]["method"].endswith("/CreateJob")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert _ok(api.get("/api/audit-events", params={"startTime": later})).json().get("events", []) == []
    window = _ok(
        api.get(
            "/api/audit-events",
            params={"resource": resource, "startTime": start.isoformat().replace("+00:00", "Z"), "endTime": later},
        )
    ).json()["events"]
    assert len(window) == 4
    # Admins only.
    refused = httpx.get(f"{gateway}/api/audit-events", headers={"Authorization": f"Bearer {viewer_token}"})
    assert refused.status_code == 403


def test_no_secret_reaches_the_audit_log(api: httpx.Client, db: psycopg.Connection[Any]) -> None:
    password = f"pw-{secrets.token_hex(12)}"
    header_value = f"hv-{secrets.token_hex(12)}"
    env_value = f"ev-{secrets.token_hex(12)}"
    name = f"secretive-{uuid.uuid4().hex[:8]}"
    _ok(api.post("/api/users", json={"username": name, "password": password, "role": "VIEWER"}))
    _ok(api.patch(f"/api/users/{name}", json={"password": password + "-2"}))
    # A refused call carrying a password is recorded without it too.
    assert (
        api.post("/api/users", json={"username": name, "password": password, "role": "VIEWER"}).status_code == 409
    )
    job = _ok(
        api.post(
            "/api/jobs",
            json={
                "name": name,
                "executor": {"http": {"url": "http://127.0.0.1:9/", "headers": {"Authorization": header_value}}},
            },
        )
    ).json()
    _ok(
        api.patch(
            f"/api/jobs/{job['id']}", json={"executor": {"shell": {"argv": ["true"], "env": {"TOKEN": env_value}}}}
        )
    )
    _ok(api.post("/api/service-accounts", json={"name": f"sa-{name}", "role": "VIEWER"}))
    key = _ok(api.post(f"/api/service-accounts/sa-{name}/keys", json={"name": "k"})).json()["key"]
    httpx.get(f"{api.base_url}/api/jobs", headers={"Authorization": f"Bearer {key}"})  # a call made with it
    httpx.post(f"{api.base_url}/api/jobs", json={}, headers={"Authorization": f"Bearer {key}"})  # refused
    secret_value = f"sv-{secrets.token_hex(12)}"
    secret_name = f"AUDIT_{uuid.uuid4().hex[:8].upper()}"
    _ok(api.post("/api/secrets", json={"name": secret_name, "value": secret_value}))
    _ok(api.patch(f"/api/secrets/{secret_name}", json={"value": secret_value + "-2"}))
    assert api.post("/api/secrets", json={"name": secret_name, "value": secret_value}).status_code == 409
    dump = "\n".join(row[0] for row in db.execute("SELECT audit_events::text FROM audit_events"))
    assert name in dump and secret_name in dump  # the rows are there ...
    for secret in (password, header_value, env_value, key, key.rsplit("_", 1)[-1], secret_value):
        assert secret not in dump  # ... without a secret
