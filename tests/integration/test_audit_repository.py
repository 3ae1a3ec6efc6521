"""The audit rows the repositories write: in the statement (so the transaction) of the change,
none when nothing changed, and the purge the retention loops call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmesh.audit import AuditContext
from taskmesh.auth import api_keys
from taskmesh.db.audit import AuditRepository, purge_audit_events
from taskmesh.db.jobs import JobRepository
from taskmesh.db.pg import Database, Query, statement
from taskmesh.db.runs import RunRepository
from taskmesh.db.secrets import SecretRepository
from taskmesh.db.service_accounts import ServiceAccountRepository
from taskmesh.db.users import UserRepository
from taskmesh.ids import new_id
from taskmesh.records import RunRequest
from taskmesh.service_errors import AlreadyExists, InvalidArgument, NotFound
from taskmesh.states import Role, Trigger


def _audit(method: str) -> AuditContext:
    return AuditContext(actor="alice", role="ADMIN", method=method, request_id=new_id())


async def _one(engine: Database, sql: str, params: dict[str, Any]) -> Any:
    async with statement(engine) as conn:
        return (await conn.execute(Query(sql), params)).first_row()


async def _audit_rows(engine: Database, request_id: str) -> list[Any]:
    async with statement(engine) as conn:
        query = Query("SELECT *, xmin::text AS xid FROM audit_events WHERE request_id = :r ORDER BY id")
        return (await conn.execute(query, {"r": request_id})).all_rows()


async def test_a_run_and_its_audit_row_share_a_transaction_and_group_commits_keep_one_row_each(
    engine: Database, job_id: str
) -> None:
    runs = RunRepository(engine)
    audits = [_audit("/taskmesh.v1.JobService/TriggerJob") for _ in range(3)]
    requests = [RunRequest(new_id(), job_id, None, audit=audit) for audit in audits]
    created = await runs.create(requests, Trigger.MANUAL)
    assert all(run is not None for run in created) and all(a.recorded for a in audits)
    for request, audit in zip(requests, audits, strict=True):
        [row] = await _audit_rows(engine, audit.request_id)
        run = await _one(engine, "SELECT xmin::text AS xid FROM runs WHERE id = :id", {"id": request.run_id})
        assert row.xid == run.xid and row.resource == f"jobs/{job_id}" and row.outcome == "OK"
        assert (row.actor, row.role, row.method) == ("alice", "ADMIN", audit.method)


async def test_a_trigger_of_a_missing_job_writes_no_ok_row(engine: Database) -> None:
    audit = _audit("/taskmesh.v1.JobService/TriggerJob")
    [run] = await RunRepository(engine).create([RunRequest(new_id(), new_id(), None, audit=audit)], Trigger.MANUAL)
    assert run is None and await _audit_rows(engine, audit.request_id) == []


async def test_a_batch_is_one_row(engine: Database, job_id: str) -> None:
    audit = _audit("/taskmesh.v1.JobService/BatchTriggerJobs")
    requests = [RunRequest(new_id(), job_id) for _ in range(10)]
    await RunRepository(engine).create(requests, Trigger.MANUAL, batch_audit=audit)
    [row] = await _audit_rows(engine, audit.request_id)
    assert row.resource == f"jobs/{job_id}" and row.detail == {"triggers": 10, "jobs": [job_id]}


async def test_a_failed_change_leaves_no_audit_row(engine: Database, job_id: str) -> None:
    jobs = JobRepository(engine)
    name = (await jobs.get(job_id)).name
    audit = _audit("/taskmesh.v1.JobService/CreateJob")
    with pytest.raises(AlreadyExists):
        await jobs.create(new_id(), name, "", {"noop": {}}, {}, audit=audit)
    missing = _audit("/taskmesh.v1.JobService/DeleteJob")
    with pytest.raises(NotFound):
        await jobs.delete(new_id(), missing)
    assert not audit.recorded and not missing.recorded
    assert (
        await _audit_rows(engine, audit.request_id) == [] and await _audit_rows(engine, missing.request_id) == []
    )


async def test_users_keys_and_jobs_share_their_transaction_with_their_rows(engine: Database) -> None:
    users, accounts, jobs = UserRepository(engine), ServiceAccountRepository(engine), JobRepository(engine)
    name = f"u-{new_id()[-8:]}"
    audit = _audit("/taskmesh.v1.AuthService/CreateUser")
    await users.create(name, "not-a-real-hash", Role.VIEWER, audit)
    [row] = await _audit_rows(engine, audit.request_id)
    user = await _one(engine, "SELECT xmin::text AS xid FROM users WHERE username = :n", {"n": name})
    assert row.xid == user.xid and row.resource == f"users/{name}"

    account = f"sa-{new_id()[-8:]}"
    await accounts.create(
        account, Role.OPERATOR, "", "alice", _audit("/taskmesh.v1.AuthService/CreateServiceAccount")
    )
    made = api_keys.new_key()
    audit = _audit("/taskmesh.v1.AuthService/CreateApiKey")
    await accounts.create_key(
        account, "k", made.key_id, made.secret_hash, datetime.now(UTC) + timedelta(days=1), "alice", audit
    )
    [row] = await _audit_rows(engine, audit.request_id)
    key = await _one(engine, "SELECT xmin::text AS xid FROM api_keys WHERE id = :id", {"id": made.key_id})
    assert row.xid == key.xid and row.resource == f"apiKeys/{made.key_id}"

    audit = _audit("/taskmesh.v1.JobService/CreateJob")
    job = await jobs.create(new_id(), f"j-{new_id()[-8:]}", "", {"noop": {}}, {}, audit=audit)
    [row] = await _audit_rows(engine, audit.request_id)
    stored = await _one(engine, "SELECT xmin::text AS xid FROM jobs WHERE id = :id", {"id": job.id})
    assert row.xid == stored.xid


async def test_the_purge_deletes_old_events_in_bounded_batches(engine: Database) -> None:
    repository = AuditRepository(engine)
    marker = f"purge-{new_id()}"
    old = AuditContext(actor=marker, role="ADMIN", method="/m", request_id="old")
    await repository.record([(old, "", "OK", None)] * 5)
    await repository.record(
        [(AuditContext(actor=marker, role="ADMIN", method="/m", request_id="new"), "", "OK", None)]
    )
    async with statement(engine) as conn:
        await conn.execute(
            Query(
                "UPDATE audit_events SET time = time - interval '400 days' WHERE actor = :a AND request_id = 'old'"
            ),
            {"a": marker},
        )
    before = datetime.now(UTC) - timedelta(days=365)
    assert await purge_audit_events(engine, before, limit=2) == 2
    while await purge_audit_events(engine, before, limit=2):
        pass
    async with statement(engine) as conn:
        left = (
            await conn.execute(Query("SELECT request_id FROM audit_events WHERE actor = :a"), {"a": marker})
        ).first_column()
    assert left == ["new"]


class _NoCache:
    def enqueue(self, runs: Any) -> None:
        pass


async def test_a_trigger_revalidated_after_a_job_change_leaves_one_audit_row(
    engine: Database, job_id: str
) -> None:
    """The audited CTE joins jobs with the runs' job-version guard: the stale insert writes no
    row, the one Runs.trigger makes after validating again writes the call's only row."""
    from api_server.parameters import TriggerInput
    from api_server.runs import Runs
    from taskmesh.db.logs import LogRepository
    from taskmesh.records import JobChanges

    runs = Runs(JobRepository(engine), RunRepository(engine), LogRepository(engine), _NoCache())  # type: ignore[arg-type]
    await runs.trigger(job_id, None, _audit("/taskmesh.v1.JobService/TriggerJob"))  # caches the job's version
    await JobRepository(engine).update(
        job_id, JobChanges(description="a new version"), AuditContext.system("tests")
    )
    stale = _audit("/taskmesh.v1.JobService/TriggerJob")
    run = await runs.trigger(job_id, None, stale)  # first insert refused as stale, then again
    [row] = await _audit_rows(engine, stale.request_id)
    assert row.outcome == "OK" and row.resource == f"jobs/{job_id}"
    stored = await _one(engine, "SELECT xmin::text AS xid FROM runs WHERE id = :id", {"id": run.id})
    assert row.xid == stored.xid
    # The same for a batch: one row, written by its first insert, whatever its retries.
    await JobRepository(engine).update(job_id, JobChanges(description="again"), AuditContext.system("tests"))
    batch = _audit("/taskmesh.v1.JobService/BatchTriggerJobs")
    created = await runs.trigger_many([TriggerInput(job_id, None, None, "requests[0].parameters")] * 2, batch)
    assert len(created) == 2
    [row] = await _audit_rows(engine, batch.request_id)
    assert row.outcome == "OK" and row.detail["triggers"] == 2


async def test_a_stale_request_writes_no_audit_row(engine: Database, job_id: str) -> None:
    from datetime import datetime as _datetime

    audit = _audit("/taskmesh.v1.JobService/TriggerJob")
    old = _datetime(2000, 1, 1, tzinfo=UTC)
    [run] = await RunRepository(engine).create(
        [RunRequest(new_id(), job_id, None, job_version=old, audit=audit)], Trigger.MANUAL
    )
    assert run is None and await _audit_rows(engine, audit.request_id) == []


async def test_a_stale_request_answered_by_its_keys_earlier_run_writes_one_row(
    engine: Database, job_id: str
) -> None:
    """No second try follows such a request (the earlier run is its answer): its row is written now."""
    from datetime import datetime as _datetime

    runs = RunRepository(engine)
    [first] = await runs.create([RunRequest(new_id(), job_id, "key-1")], Trigger.MANUAL)
    audit = _audit("/taskmesh.v1.JobService/TriggerJob")
    old = _datetime(2000, 1, 1, tzinfo=UTC)
    [again] = await runs.create(
        [RunRequest(new_id(), job_id, "key-1", job_version=old, audit=audit)], Trigger.MANUAL
    )
    assert first is not None and again is not None and again.id == first.id
    [row] = await _audit_rows(engine, audit.request_id)
    assert row.outcome == "OK" and row.resource == f"jobs/{job_id}"


async def _xid(engine: Database, table: str, column: str, value: str) -> str:
    row = await _one(engine, f"SELECT xmin::text AS xid FROM {table} WHERE {column} = :v", {"v": value})
    return str(row.xid)


async def test_secrets_share_their_transaction_with_their_rows_and_failures_write_none(engine: Database) -> None:
    from api_server.secrets import Secrets
    from tests.integration.test_secret_store import keyring, unique

    secrets = Secrets(SecretRepository(engine), keyring("old"))
    name = unique("AUDITED")
    created = _audit("/taskmesh.v1.SecretService/CreateSecret")
    await secrets.create(name, "value-one", "", created)
    [row] = await _audit_rows(engine, created.request_id)
    assert created.recorded and row.outcome == "OK" and row.resource == f"secrets/{name}"
    assert row.detail == {"key_id": "old", "version": 1}  # never the value
    assert row.xid == await _xid(engine, "secrets", "name", name)

    updated = _audit("/taskmesh.v1.SecretService/UpdateSecret")
    await secrets.update(name, "value-two", None, updated)
    [row] = await _audit_rows(engine, updated.request_id)
    assert row.xid == await _xid(engine, "secrets", "name", name) and row.detail["version"] == 2

    rotation = _audit("/taskmesh.v1.SecretService/RotateSecrets")
    rotated, _ = await Secrets(SecretRepository(engine), keyring("new", "old")).rotate(rotation)
    assert rotated >= 1 and rotation.recorded
    [row] = await _audit_rows(engine, rotation.request_id)  # one row, however many were re-sealed
    assert row.detail == {"key_id": "new"}
    nothing = _audit("/taskmesh.v1.SecretService/RotateSecrets")
    assert (await Secrets(SecretRepository(engine), keyring("new", "old")).rotate(nothing))[0] == 0
    assert not nothing.recorded  # nothing changed: the guard writes that call's row

    deleted = _audit("/taskmesh.v1.SecretService/DeleteSecret")
    await secrets.delete(name, deleted)
    [row] = await _audit_rows(engine, deleted.request_id)
    assert row.resource == f"secrets/{name}"

    failures = [
        _audit(f"/taskmesh.v1.SecretService/{m}") for m in ("CreateSecret", "UpdateSecret", "DeleteSecret")
    ]
    other = unique("TAKEN")
    await secrets.create(other, "value-one", "", _audit("/taskmesh.v1.SecretService/CreateSecret"))
    with pytest.raises(AlreadyExists):
        await secrets.create(other, "value-one", "", failures[0])
    with pytest.raises(NotFound):
        await secrets.update(name, "value-three", None, failures[1])
    with pytest.raises(NotFound):
        await secrets.delete(name, failures[2])
    for failure in failures:
        assert not failure.recorded and await _audit_rows(engine, failure.request_id) == []


async def test_notification_changes_share_their_transaction_with_their_rows_and_failures_write_none(
    engine: Database, job_id: str
) -> None:
    from api_server.notifications import Notifications
    from taskmesh.db.notifications import NotificationRepository
    from taskmesh.egress import EgressPolicy
    from taskmesh.v1 import notification_service_pb2 as pb

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    notifications = Notifications(NotificationRepository(engine), EgressPolicy(allow_loopback=True), resolver)
    channel = pb.NotificationChannel(name=f"ch-{new_id()[-8:]}", url="http://127.0.0.1:9/hook", secret="s" * 20)
    created = _audit("/taskmesh.v1.NotificationService/CreateNotificationChannel")
    stored = await notifications.create_channel(channel, created)
    [row] = await _audit_rows(engine, created.request_id)
    assert created.recorded and row.resource == f"notificationChannels/{stored.id}"
    assert row.xid == await _xid(engine, "notification_channels", "id", stored.id)

    tested = _audit("/taskmesh.v1.NotificationService/TestNotificationChannel")
    delivery = await notifications.test_channel(stored.id, tested)
    [row] = await _audit_rows(engine, tested.request_id)
    assert row.resource == f"notificationChannels/{stored.id}"
    assert row.xid == await _xid(engine, "notification_deliveries", "id", delivery.id)

    rule = pb.NotificationRule(name="r", channel_id=stored.id, job_id=job_id, events=[pb.RUN_FAILED])
    made = _audit("/taskmesh.v1.NotificationService/CreateNotificationRule")
    stored_rule = await notifications.create_rule(rule, made)
    [row] = await _audit_rows(engine, made.request_id)
    assert row.resource == f"notificationRules/{stored_rule.id}"
    assert row.xid == await _xid(engine, "notification_rules", "id", stored_rule.id)

    changed = _audit("/taskmesh.v1.NotificationService/UpdateNotificationRule")
    await notifications.update_rule(pb.NotificationRule(id=stored_rule.id, disabled=True), ["disabled"], changed)
    [row] = await _audit_rows(engine, changed.request_id)
    assert row.xid == await _xid(engine, "notification_rules", "id", stored_rule.id)

    for method, delete in (
        ("DeleteNotificationRule", lambda a: notifications.delete_rule(stored_rule.id, a)),
        ("DeleteNotificationChannel", lambda a: notifications.delete_channel(stored.id, a)),
    ):
        done = _audit(f"/taskmesh.v1.NotificationService/{method}")
        await delete(done)
        [row] = await _audit_rows(engine, done.request_id)
        assert row.outcome == "OK" and done.recorded
        again = _audit(f"/taskmesh.v1.NotificationService/{method}")
        with pytest.raises(NotFound):
            await delete(again)  # gone: nothing changed, no row
        assert not again.recorded and await _audit_rows(engine, again.request_id) == []

    failed = _audit("/taskmesh.v1.NotificationService/CreateNotificationRule")
    with pytest.raises(InvalidArgument):  # the channel is gone: a foreign key refuses the insert
        await notifications.create_rule(rule, failed)
    missing = _audit("/taskmesh.v1.NotificationService/UpdateNotificationChannel")
    with pytest.raises(NotFound):
        await notifications.update_channel(
            pb.NotificationChannel(id=stored.id, disabled=True), ["disabled"], missing
        )
    for failure in (failed, missing):
        assert not failure.recorded and await _audit_rows(engine, failure.request_id) == []
