"""Notification policies as pure functions: signing, event detection, retries, payloads, URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from taskmesh.egress import EgressPolicy, MeshEndpoint
from taskmesh.notify import events, payloads, retries, signing, targets
from taskmesh.notify.records import (
    EventType,
    FinishedRun,
    Format,
    JobRef,
    RuleRecord,
    SkippedSlot,
    WaitingRun,
)
from taskmesh.service_errors import InvalidArgument

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
JOB = JobRef("11111111-1111-1111-1111-111111111111", "nightly", {"team": "data", "tier": "1"})
OTHER = JobRef("22222222-2222-2222-2222-222222222222", "hourly", {"team": "web"})


def rule(
    name: str = "r",
    channel: str = "c1",
    *,
    job_id: str | None = None,
    selector: dict[str, str] | None = None,
    kinds: tuple[EventType, ...] = (EventType.RUN_FAILED,),
    stuck_after: float = 300.0,
    disabled: bool = False,
) -> RuleRecord:
    return RuleRecord(name, name, channel, job_id, selector or {}, frozenset(kinds), stuck_after, disabled)


def finished(state: str, previous: str | None = None, job: JobRef = JOB, run_id: str = "run-1") -> FinishedRun:
    return FinishedRun(
        id=run_id,
        job=job,
        state=state,
        attempt=3,
        trigger="SCHEDULE",
        queue_time=NOW - timedelta(minutes=1),
        start_time=NOW - timedelta(seconds=50),
        finish_time=NOW,
        error={"kind": "EXECUTOR_FAILED", "message": "exit code 7"} if state == "FAILED" else None,
        previous_state=previous,
    )


# --- signing ---


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body_like_stripe() -> None:
    body = b'{"id":"e1"}'
    header = signing.signature_header("s3cret-0123456789", 1700000000, body)
    expected = hmac.new(b"s3cret-0123456789", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_the_signature_within_the_window_and_nothing_else() -> None:
    body = b'{"id":"e1"}'
    header = signing.signature_header("secret-one-0123456", 1000, body)
    assert signing.verify("secret-one-0123456", header, body, now=1000 + 299)
    assert not signing.verify("secret-one-0123456", header, body, now=1000 + 301)  # replayed too late
    assert not signing.verify("secret-two-0123456", header, body, now=1000)
    assert not signing.verify("secret-one-0123456", header, body + b" ", now=1000)
    assert not signing.verify("secret-one-0123456", header.replace("t=1000", "t=1001"), body, now=1000)
    assert not signing.verify("secret-one-0123456", "v1=" + header.split("v1=")[1], body, now=1000)
    assert not signing.verify("secret-one-0123456", "garbage", body, now=1000)


def test_any_of_several_v1_signatures_verifies_during_a_rotation() -> None:
    body = b"{}"
    old = signing.digest("old-secret-0123456", 5, body)
    header = signing.signature_header("new-secret-0123456", 5, body) + f",v1={old}"
    assert signing.verify("old-secret-0123456", header, body, now=5)
    assert signing.verify("new-secret-0123456", header, body, now=5)


# --- event detection ---


def test_a_failed_run_is_run_failed_and_run_finished() -> None:
    kinds = [e.type for e in events.run_events(finished("FAILED"))]
    assert kinds == [EventType.RUN_FINISHED, EventType.RUN_FAILED]


def test_a_success_after_a_failure_is_a_recovery_and_only_then() -> None:
    assert EventType.JOB_RECOVERED in [e.type for e in events.run_events(finished("SUCCEEDED", "FAILED"))]
    for previous in ("SUCCEEDED", None):
        assert EventType.JOB_RECOVERED not in [e.type for e in events.run_events(finished("SUCCEEDED", previous))]
    assert [e.type for e in events.run_events(finished("CANCELLED", "FAILED"))] == [EventType.RUN_FINISHED]


def test_event_ids_are_derived_from_the_facts_so_every_scheduler_makes_the_same() -> None:
    first, second = events.run_events(finished("FAILED")), events.run_events(finished("FAILED"))
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == 2  # per event type
    assert events.run_events(finished("FAILED", run_id="run-2"))[1].id != first[1].id
    assert all(e.data["id"] == e.id for e in first)  # the payload carries it


def test_skipped_slots_are_misfired_or_skipped_by_reason() -> None:
    slot = SkippedSlot(JOB, NOW - timedelta(hours=1), "MISFIRED", NOW)
    assert events.slot_event(slot).type is EventType.SLOT_MISFIRED
    for reason in ("OVERLAP", "OUTSIDE_CATCH_UP_WINDOW"):
        event = events.slot_event(SkippedSlot(JOB, slot.slot_time, reason, NOW))
        assert event.type is EventType.SLOT_SKIPPED
        assert event.data["slot"] == {"time": "2026-12-02T00:00:00Z", "reason": reason}


def test_a_rule_selects_its_job_or_the_jobs_its_labels_pick() -> None:
    assert events.selects(rule(job_id=JOB.id), JOB) and not events.selects(rule(job_id=JOB.id), OTHER)
    assert events.selects(rule(selector={"team": "data"}), JOB)
    assert not events.selects(rule(selector={"team": "data", "tier": "2"}), JOB)
    assert events.selects(rule(), JOB) and events.selects(rule(), OTHER)  # no job, no selector: every job


def test_deliveries_are_one_per_event_and_channel_whatever_the_rules() -> None:
    failed = events.run_events(finished("FAILED"))
    rules = [
        rule("a", "c1", kinds=(EventType.RUN_FAILED,)),
        rule("b", "c1", selector={"team": "data"}, kinds=(EventType.RUN_FAILED, EventType.RUN_FINISHED)),
        rule("c", "c2", job_id=OTHER.id, kinds=(EventType.RUN_FAILED,)),  # another job
        rule("d", "c3", kinds=(EventType.RUN_FAILED,), disabled=True),
    ]
    chosen = {(d.event.type, d.channel_id, d.rule_id) for d in events.deliveries(failed, rules)}
    assert chosen == {(EventType.RUN_FINISHED, "c1", "b"), (EventType.RUN_FAILED, "c1", "a")}


def test_a_run_is_stuck_for_a_rule_once_it_waited_longer_than_the_rule_allows() -> None:
    waiting = WaitingRun("run-9", JOB, 1, NOW - timedelta(minutes=10), 600.0)
    event = events.stuck_event(waiting, NOW)
    assert events.matches(rule(kinds=(EventType.RUN_STUCK,), stuck_after=300), event)
    assert not events.matches(rule(kinds=(EventType.RUN_STUCK,), stuck_after=900), event)
    again = events.stuck_event(waiting, NOW + timedelta(seconds=30))
    assert again.id == event.id  # the same wait is one event, however often it is seen
    assert events.stuck_event(WaitingRun("run-9", JOB, 2, NOW, 600.0), NOW).id != event.id


# --- retries ---


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap_with_half_of_it_jittered() -> None:
    schedule = retries.RetrySchedule(initial_seconds=5, multiplier=2, max_seconds=60, max_attempts=10)
    assert [retries.backoff(n, schedule, draw=1.0) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    assert retries.backoff(1, schedule, draw=0.0) == 2.5
    assert retries.backoff(10, schedule, draw=0.0) == 30


def test_decide_delivers_retries_and_gives_up() -> None:
    schedule = retries.RetrySchedule(initial_seconds=1, max_attempts=3)
    ok = retries.AttemptResult(ok=True, status_code=204)
    down = retries.AttemptResult(ok=False, error="connection refused")
    denied = retries.AttemptResult(ok=False, error="egress denied", retryable=False)
    assert retries.decide(ok, 1, schedule, 0.5).state is retries.DeliveryState.DELIVERED
    pending = retries.decide(down, 1, schedule, 1.0)
    assert pending.state is retries.DeliveryState.PENDING and pending.delay_seconds == 1
    assert retries.decide(down, 3, schedule, 0.5).state is retries.DeliveryState.FAILED
    assert retries.decide(denied, 1, schedule, 0.5).state is retries.DeliveryState.FAILED


def test_only_2xx_delivers() -> None:
    assert retries.classify_status(200).ok and retries.classify_status(299).ok
    for status in (301, 400, 410, 500, 503):
        result = retries.classify_status(status)
        assert not result.ok and result.retryable and str(status) in result.error


# --- payloads ---


def test_the_generic_body_is_the_event_and_slack_gets_escaped_text_and_the_event_id() -> None:
    event = events.run_events(finished("FAILED", job=JobRef(JOB.id, "<!channel> & co", {})))[1]
    generic = json.loads(payloads.body(event.data, Format.GENERIC))
    assert generic == json.loads(json.dumps(event.data))
    assert generic["run"]["error"]["message"] == "exit code 7"
    slack = json.loads(payloads.body(event.data, Format.SLACK))
    assert slack["taskmesh_event_id"] == event.id
    assert "&lt;!channel&gt; &amp; co" in slack["text"] and "<!channel>" not in slack["text"]
    assert "FAILED after attempt 3: exit code 7" in slack["text"]


# --- targets ---

POLICY = EgressPolicy(mesh=(MeshEndpoint("gateway admin port", 9901),), allow_loopback=True)


async def _no_resolver(host: str, port: int) -> list[str]:
    raise OSError("no DNS in unit tests")


def _allowed(url: str, resolved: list[str] | None = None) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return resolved or []

    asyncio.run(targets.check_allowed(url, POLICY, resolver if resolved else _no_resolver, "channel.url"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "is required"),
        ("ftp://example.com/x", "http:// or https://"),
        ("http:///path", "has no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "invalid port"),
    ],
)
def test_bad_urls_are_invalid_arguments_naming_the_field(url: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        targets.check_url(url, "channel.url")
    assert "channel.url" in str(raised.value) and problem in str(raised.value)


def test_urls_aimed_at_the_mesh_or_link_local_are_refused_by_the_egress_policy() -> None:
    for url, resolved in (
        ("http://127.0.0.1:9901/quitquitquit", None),
        ("http://[::ffff:127.0.0.1]:9901/", None),
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://admin.internal:9901/", ["127.0.0.1"]),
    ):
        with pytest.raises(InvalidArgument) as raised:
            _allowed(url, resolved)
        assert "egress" in str(raised.value)
    _allowed("http://127.0.0.1:8000/hook")  # loopback is open in this policy; not the mesh's port
    _allowed("https://hooks.example.com/x")  # unresolvable now: the delivery will say so
    _allowed("https://both.example.com/", ["127.0.0.1", "93.184.216.34"])


# --- contracts: permissions, enums, the migration's frozen lists ---


def test_every_notification_rpc_has_roles_viewers_read_rules_and_deliveries_operators_all() -> None:
    from taskmesh.auth import permissions
    from taskmesh.states import Role
    from taskmesh.v1 import notification_service_pb2

    service = notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"]
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        reads = method.name.startswith(("Get", "List")) and "Channel" not in method.name
        assert permissions.allowed(path, Role.VIEWER) is reads, path
        assert permissions.allowed(path, Role.OPERATOR) and permissions.allowed(path, Role.ADMIN), path
        assert not permissions.allowed(path, Role.WORKER), path


def test_the_enums_mirror_the_protos_and_the_migration() -> None:
    import importlib.util
    from pathlib import Path

    from taskmesh.db import models
    from taskmesh.v1 import notification_service_pb2 as pb

    proto_events = set(pb.NotificationEventType.keys()) - {"NOTIFICATION_EVENT_TYPE_UNSPECIFIED"}
    assert {e.value for e in EventType} == proto_events
    assert {s.value for s in retries.DeliveryState} == set(pb.NotificationDelivery.State.keys()) - {
        "STATE_UNSPECIFIED"
    }
    assert {f.value for f in Format} == set(pb.NotificationChannel.Format.keys()) - {"FORMAT_UNSPECIFIED"}
    path = Path(models.__file__).parent / "migrations" / "versions" / "0011_notifications.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(migration.EVENT_TYPES) == proto_events
    assert set(migration.DELIVERY_STATES) == set(models.DELIVERY_STATES)
    assert set(migration.FORMATS) == set(models.NOTIFICATION_FORMATS)
