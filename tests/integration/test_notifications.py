"""The notification outbox on the real database: the scan's cursor and dedupe with two
schedulers, and two delivery loops posting each delivery once, retried while the receiver is
down. Runs and skipped slots are written directly: the scan reads what is there."""

from __future__ import annotations

import asyncio
import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from scheduler.notify_delivery import DeliveryConfig, NotificationDelivery, WebhookPoster
from scheduler.notify_scan import NotificationScan, ScanConfig, detect_run_events, detect_slot_events, detect_stuck
from taskmesh.audit import AuditContext
from taskmesh.db.notifications import NotificationRepository, RecordedResult
from taskmesh.db.pg import Database, Query, statement
from taskmesh.egress import EgressPolicy, MeshEndpoint
from taskmesh.notify import events, signing
from taskmesh.notify.records import EventType, JobRef, NewDelivery
from taskmesh.notify.retries import AttemptResult, Decision, DeliveryState, RetrySchedule
from tests.support import Isolation

pytestmark = pytest.mark.integration

SECRET = "integration-secret-0123"
LOOPBACK = EgressPolicy(allow_loopback=True)


@pytest.fixture
async def second_engine(integration_isolation: Isolation) -> AsyncIterator[Database]:
    """Another pool: what a second scheduler would have."""
    engine = Database(integration_isolation.database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def only_this_tests_channels(engine: Database) -> None:
    """The session's database is shared: earlier tests' channels are disabled, so that a
    delivery loop here claims only what this test queued."""
    async with statement(engine) as conn:
        await conn.execute(Query("UPDATE notification_channels SET disabled = true"))


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink.lock:
                    sink.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "600")
                self.end_headers()
                self.wfile.write(b"x" * 600)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


async def _channel(repository: NotificationRepository, url: str) -> str:
    name = f"ch-{uuid.uuid4().hex[:10]}"
    values = {
        "name": name,
        "url": url,
        "secret": SECRET,
        "format": "GENERIC",
        "disabled": False,
        "description": "",
    }
    return (await repository.create_channel(values, datetime.now(UTC), AuditContext.system("tests"))).id


async def _rule(repository: NotificationRepository, channel_id: str, job_id: str, kinds: list[str]) -> str:
    values = {
        "name": f"rule-{uuid.uuid4().hex[:10]}",
        "channel_id": channel_id,
        "job_id": job_id,
        "label_selector": {},
        "events": kinds,
        "stuck_after_seconds": 300.0,
        "disabled": False,
    }
    return (await repository.create_rule(values, datetime.now(UTC), AuditContext.system("tests"))).id


async def _finished_runs(engine: Database, job_id: str, states: list[str]) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in states]
    async with statement(engine) as conn:
        await conn.execute(
            Query(
                """INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time, start_time, finish_time)
                   SELECT u.id, :job_id, u.state, 1, 'MANUAL', '{"noop": {}}', clock_timestamp(),
                          clock_timestamp(), clock_timestamp()
                   FROM unnest(CAST(:ids AS uuid[]), CAST(:states AS text[])) AS u(id, state)"""
            ),
            {"job_id": job_id, "ids": ids, "states": states},
        )
    return ids


async def _deliveries(repository: NotificationRepository, channel_id: str) -> list[tuple[str, str | None]]:
    from taskmesh.records import Condition

    items = await repository.list_deliveries([Condition("channel_id", "=", channel_id)], None, 1000)
    return sorted((d.event_type.value, d.run_id) for d in items)


async def _scan_until_past_now(scan: NotificationScan, engine: Database) -> None:
    """Scan until the runs cursor has moved past every row stamped before this call."""
    started = datetime.now(UTC)
    while True:
        await scan.scan_once()
        async with statement(engine) as conn:
            cursor = "SELECT position_time FROM notification_cursors WHERE name = 'runs'"
            if (await conn.execute(Query(cursor))).one_value() > started:
                return
        await asyncio.sleep(0.05)


def _scan(engine: Database, batch_size: int = 1000) -> NotificationScan:
    config = ScanConfig(interval=0.05, settle=0.1, batch_size=batch_size, stuck_interval=3600)
    return NotificationScan(NotificationRepository(engine), config, asyncio.Event())


async def test_two_schedulers_scanning_at_once_make_one_delivery_per_event_and_channel(
    engine: Database, second_engine: Database, job_id: str
) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, "http://127.0.0.1:9/hook")
    await _rule(repository, channel, job_id, ["RUN_FAILED", "RUN_FINISHED"])
    await _rule(repository, channel, job_id, ["RUN_FAILED"])  # the same channel twice: still one each
    failed, succeeded = await _finished_runs(engine, job_id, ["FAILED", "SUCCEEDED"])
    first, second = _scan(engine), _scan(second_engine)
    await asyncio.gather(_scan_until_past_now(first, engine), _scan_until_past_now(second, second_engine))
    expected = sorted([("RUN_FAILED", failed), ("RUN_FINISHED", failed), ("RUN_FINISHED", succeeded)])
    assert await _deliveries(repository, channel) == expected
    # Even a scan that reads the same rows again (a cursor moved back) adds nothing.
    async with statement(engine) as conn:
        await conn.execute(
            Query(
                "UPDATE notification_cursors SET position_time = position_time - interval '1 hour' WHERE name = 'runs'"
            )
        )
    await _scan_until_past_now(second, second_engine)
    assert await _deliveries(repository, channel) == expected


async def test_the_cursor_reads_in_batches_and_never_rereads_or_skips(engine: Database, job_id: str) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, "http://127.0.0.1:9/hook")
    await _rule(repository, channel, job_id, ["RUN_FINISHED"])
    runs = await _finished_runs(engine, job_id, ["SUCCEEDED"] * 7)  # one timestamp for all: ties in time
    scanned: list[int] = []
    while True:
        result = await repository.scan_finished_runs(3, 0.1, detect_run_events)
        if result.scanned:
            scanned.append(result.created)
        if not result.full and len(await _deliveries(repository, channel)) == len(runs):
            break
        await asyncio.sleep(0.05)
    assert sorted(run for _, run in await _deliveries(repository, channel)) == sorted(runs)
    assert sum(scanned) == len(runs)  # each run's event created exactly once, over several batches
    assert max(scanned) <= 3


async def test_skipped_slots_become_slot_events(engine: Database, job_id: str) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, "http://127.0.0.1:9/hook")
    await _rule(repository, channel, job_id, ["SLOT_MISFIRED", "SLOT_SKIPPED"])
    async with statement(engine) as conn:
        await conn.execute(
            Query(
                """INSERT INTO skipped_slots (job_id, slot_time, reason) VALUES
                   (:job_id, '2026-01-01T00:00:00Z', 'MISFIRED'), (:job_id, '2026-01-01T01:00:00Z', 'OVERLAP')"""
            ),
            {"job_id": job_id},
        )
    while len(await _deliveries(repository, channel)) < 2:
        await repository.scan_skipped_slots(100, 0.1, detect_slot_events)
        await asyncio.sleep(0.05)
    assert [kind for kind, _ in await _deliveries(repository, channel)] == ["SLOT_MISFIRED", "SLOT_SKIPPED"]


def _loop(engine: Database, schedule: RetrySchedule, policy: EgressPolicy = LOOPBACK) -> NotificationDelivery:
    poster = WebhookPoster(policy, timeout=5)
    config = DeliveryConfig(batch_size=7, poll_interval=0.05, timeout=5, schedule=schedule)
    return NotificationDelivery(NotificationRepository(engine), poster, config, asyncio.Event(), draw=lambda: 0.0)


def _test_deliveries(channel: str, count: int) -> list[NewDelivery]:
    now = datetime.now(UTC)
    return [
        NewDelivery(events.test_event(JobRef("", ""), now, uuid.uuid4().hex), channel, None) for _ in range(count)
    ]


async def test_two_delivery_loops_post_each_delivery_once_signed(
    engine: Database, second_engine: Database, sink: Sink
) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, sink.url)
    queued = _test_deliveries(channel, 30)
    ids = await repository.enqueue(queued)
    assert len(ids) == 30
    assert await repository.enqueue(queued[:5]) == []  # the same events again: nothing new
    loops = [_loop(engine, RetrySchedule()), _loop(second_engine, RetrySchedule())]
    while sum(await asyncio.gather(*(loop.deliver_once() for loop in loops))):
        pass
    event_ids = [headers["taskmesh-event-id"] for headers, _ in sink.requests]
    assert sorted(event_ids) == sorted(d.event.id for d in queued)  # each exactly once
    for headers, body in sink.requests:
        assert signing.verify(SECRET, headers["taskmesh-signature"], body, now=datetime.now(UTC).timestamp())
        assert SECRET not in headers.values()
    stored = [await repository.get_delivery(i) for i in ids]
    assert {(d.state, d.attempts, d.last_status_code) for d in stored} == {(DeliveryState.DELIVERED, 1, 200)}
    assert {len(d.response_excerpt) for d in stored} == {256}  # an excerpt, not the whole answer


async def test_a_receiver_that_is_down_is_retried_then_given_up_and_a_stale_result_is_dropped(
    engine: Database,
) -> None:
    repository = NotificationRepository(engine)
    closed = Sink()
    closed.close()  # nothing listens there any more
    channel = await _channel(repository, closed.url)
    [delivery_id] = await repository.enqueue(_test_deliveries(channel, 1))
    loop = _loop(engine, RetrySchedule(initial_seconds=0.05, max_seconds=0.1, max_attempts=3))
    await loop.deliver_once()
    first = await repository.get_delivery(delivery_id)
    assert first.state is DeliveryState.PENDING and first.attempts == 1 and first.last_error
    assert first.next_attempt_at is not None and first.last_attempt_time is not None
    assert first.next_attempt_at > first.last_attempt_time  # backed off
    stale = RecordedResult(
        delivery_id, 0, Decision(DeliveryState.DELIVERED), AttemptResult(ok=True, status_code=200)
    )
    assert await repository.record([stale]) == 0  # an older attempt's result changes nothing
    while (await repository.get_delivery(delivery_id)).state is DeliveryState.PENDING:
        await loop.deliver_once()
        await asyncio.sleep(0.02)
    given_up = await repository.get_delivery(delivery_id)
    assert given_up.state is DeliveryState.FAILED and given_up.attempts == 3


async def test_a_delivery_the_egress_policy_refuses_fails_at_once_without_a_request(
    engine: Database, sink: Sink
) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, sink.url)
    [delivery_id] = await repository.enqueue(_test_deliveries(channel, 1))
    port = int(sink.url.rsplit(":", 1)[1].split("/")[0])
    policy = EgressPolicy(mesh=(MeshEndpoint("gateway admin port", port),), allow_loopback=True)
    await _loop(engine, RetrySchedule(), policy).deliver_once()
    refused = await repository.get_delivery(delivery_id)
    assert refused.state is DeliveryState.FAILED and refused.attempts == 1
    assert "gateway admin port" in refused.last_error
    assert sink.requests == []
    assert refused.event_type is EventType.TEST


async def test_a_success_right_after_a_failure_is_a_recovery_and_a_long_wait_is_stuck(
    engine: Database, job_id: str
) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, "http://127.0.0.1:9/hook")
    await _rule(repository, channel, job_id, ["JOB_RECOVERED"])
    stuck_rule = {
        "name": f"stuck-{uuid.uuid4().hex[:8]}",
        "channel_id": channel,
        "job_id": job_id,
        "label_selector": {},
        "events": ["RUN_STUCK"],
        "stuck_after_seconds": 60.0,
        "disabled": False,
    }
    await repository.create_rule(stuck_rule, datetime.now(UTC), AuditContext.system("tests"))
    [failed] = await _finished_runs(engine, job_id, ["FAILED"])
    [recovered] = await _finished_runs(engine, job_id, ["SUCCEEDED"])  # queued after the failure
    [again] = await _finished_runs(engine, job_id, ["SUCCEEDED"])  # after a success: no recovery
    waiting, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    async with statement(engine) as conn:
        await conn.execute(
            Query(
                """INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time) VALUES
                   (:waiting, :job_id, 'QUEUED', 1, 'MANUAL', '{"noop": {}}', clock_timestamp() - interval '10 minutes'),
                   (:fresh, :job_id, 'QUEUED', 1, 'MANUAL', '{"noop": {}}', clock_timestamp())"""
            ),
            {"waiting": waiting, "fresh": fresh, "job_id": job_id},
        )
        # The stuck scan runs once per interval over all schedulers: let this one be due.
        await conn.execute(
            Query(
                "UPDATE notification_cursors SET position_time = position_time - interval '1 day' WHERE name = 'stuck'"
            )
        )
    await _scan_until_past_now(_scan(engine), engine)  # its first pass includes the stuck scan
    found = await _deliveries(repository, channel)
    assert ("JOB_RECOVERED", recovered) in found and ("RUN_STUCK", waiting) in found
    assert {run for kind, run in found} == {recovered, waiting}  # not the failure, the repeat, the fresh run
    assert failed and again and fresh
    again_stuck = await repository.scan_waiting_runs(100, 0.0, detect_stuck)
    assert again_stuck.scanned and again_stuck.created == 0  # still waiting, the same event: no new one


async def test_without_a_rule_the_cursors_move_on_and_a_rule_sees_what_comes_after_it(
    engine: Database, job_id: str
) -> None:
    repository = NotificationRepository(engine)
    channel = await _channel(repository, "http://127.0.0.1:9/hook")
    before = await _finished_runs(engine, job_id, ["FAILED"])
    scan = _scan(engine)
    await _scan_until_past_now(scan, engine)  # no rule: the cheap pass moves the cursors
    async with statement(engine) as conn:
        positions = (
            await conn.execute(Query("SELECT name, position_time FROM notification_cursors ORDER BY name"))
        ).all_rows()
    moved = {row.name: row.position_time for row in positions}
    assert moved["skipped_slots"] == moved["runs"]  # both event cursors, in the same statement
    await _rule(repository, channel, job_id, ["RUN_FAILED"])
    after = await _finished_runs(engine, job_id, ["FAILED"])
    await _scan_until_past_now(scan, engine)
    assert await _deliveries(repository, channel) == [("RUN_FAILED", after[0])]
    assert before[0] != after[0]
