"""Notifications in the database: channels, rules, the deliveries outbox and the event scan.

The scan never touches the statements that trigger, claim or end runs: it reads what they
wrote, after the fact, through its own indexes (migration 0011). Each source (finished runs,
skipped slots, stuck runs) has one cursor row; a scan locks it FOR UPDATE SKIP LOCKED, so any
number of schedulers scan, one at a time per source, with no leader. A scan reads rows up to
`settle` seconds ago only: the statements that end runs commit within milliseconds of the time
they stamp, so a row stamped before that bound is visible when the bound is read, and the
keyset cursor (time, id) misses nothing. UNIQUE (event_id, channel_id) is the last line of
defence: an event found twice (two scans, a re-read boundary) becomes one delivery.

Every change a NotificationService call makes writes its audit row in its own statement
(taskmesh.db.audit.audited): the row exists if and only if the change committed. A test of a
channel is audited by the insert of its delivery.

Deliveries are claimed with SKIP LOCKED and a lease; claiming counts the attempt, and the
record of its result is guarded by that count (a fencing token): a loop whose lease ran out and
whose delivery another loop took again cannot overwrite the newer attempt's result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from taskmesh.audit import AuditContext
from taskmesh.db.audit import audited
from taskmesh.db.paging import Keyset, page_query
from taskmesh.db.pg import Connection, Database, Query, statement, transaction
from taskmesh.notify.events import RUN_EVENTS, SLOT_EVENTS
from taskmesh.notify.records import (
    ChannelRecord,
    ClaimedDelivery,
    DeliveryRecord,
    EventType,
    FinishedRun,
    Format,
    JobRef,
    NewDelivery,
    RuleRecord,
    SkippedSlot,
    WaitingRun,
)
from taskmesh.notify.retries import AttemptResult, Decision, DeliveryState
from taskmesh.records import Condition, Page
from taskmesh.service_errors import InvalidArgument, NotFound

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
CHANNEL_COLUMNS = "id::text AS id, name, url, secret, format, disabled, description, create_time, update_time"
RULE_COLUMNS = (
    "id::text AS id, name, channel_id::text AS channel_id, job_id::text AS job_id, label_selector, events,"
    " stuck_after_seconds, disabled, create_time, update_time"
)
DELIVERY_COLUMNS = (
    "id::text AS id, event_id, event_type, channel_id::text AS channel_id, rule_id::text AS rule_id,"
    " job_id::text AS job_id, run_id::text AS run_id, event, state, attempts, create_time, next_attempt_at,"
    " last_attempt_time, deliver_time, last_error, last_status_code, response_excerpt"
)
CHANNEL_FIELDS = ("name", "url", "secret", "format", "disabled", "description")
RULE_FIELDS = ("name", "channel_id", "job_id", "label_selector", "events", "stuck_after_seconds", "disabled")
CHANNEL_RESOURCE = "'notificationChannels/' || changed.id"
RULE_RESOURCE = "'notificationRules/' || changed.id"
DELIVERY_FILTERS = {
    "state": "state",
    "event_type": "event_type",
    "channel_id": "channel_id::text",
    "rule_id": "rule_id::text",
    "job_id": "job_id::text",
    "run_id": "run_id::text",
    "event_id": "event_id",
}

# The rules a scan applies: enabled ones, of enabled channels, in a stable order.
ACTIVE_RULES = Query(
    f"""
    SELECT {", ".join("r." + c.strip() for c in RULE_COLUMNS.split(","))}
    FROM notification_rules r JOIN notification_channels c ON c.id = r.channel_id
    WHERE NOT r.disabled AND NOT c.disabled
    ORDER BY r.create_time, r.id
    """
)

RUNS_CURSOR, SLOTS_CURSOR = "runs", "skipped_slots"  # the event scan's cursors (notification_cursors)
EVENT_CURSORS = (RUNS_CURSOR, SLOTS_CURSOR)
LOCK_CURSOR = Query(
    "SELECT position_time, position_id, clock_timestamp() AS now FROM notification_cursors"
    " WHERE name = :name FOR UPDATE SKIP LOCKED"
)
# A scan pass when no rule is active: the event cursors that no other scheduler holds move up to
# the settle bound (nobody is told of the past), in one statement instead of a transaction per
# cursor; an idle mesh runs this every second. Answers whether a rule is active (then the pass
# scans as usual). The rules are read at the statement's start, which is after the bound: an
# event after a rule's creation is never passed over.
MOVE_ON_WITHOUT_RULES = Query(
    """
    WITH ruled AS (
        SELECT EXISTS (
            SELECT 1 FROM notification_rules r JOIN notification_channels c ON c.id = r.channel_id
            WHERE NOT r.disabled AND NOT c.disabled
        ) AS active
    ), free AS (
        SELECT name FROM notification_cursors
        WHERE name = ANY(CAST(:names AS text[])) AND NOT (SELECT active FROM ruled)
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE notification_cursors c
        SET position_time = statement_timestamp() - make_interval(secs => :settle), position_id = ''
        FROM free
        WHERE c.name = free.name AND c.position_time < statement_timestamp() - make_interval(secs => :settle)
        RETURNING c.name
    )
    SELECT active FROM ruled
    """
)
MOVE_CURSOR = Query("UPDATE notification_cursors SET position_time = :time, position_id = :id WHERE name = :name")

# Finished runs after the cursor, up to the settle bound, in cursor order (runs_finished).
FINISHED_RUNS = Query(
    """
    SELECT r.id::text AS id, r.job_id::text AS job_id, j.name AS job_name, j.labels, r.state, r.attempt,
           r.trigger, r.queue_time, r.start_time, r.finish_time, r.error,
           CASE WHEN :want_previous AND r.state = 'SUCCEEDED' THEN (
               SELECT p.state FROM runs p
               WHERE p.job_id = r.job_id AND p.state IN ('SUCCEEDED', 'FAILED')
                 AND (p.queue_time, p.id) < (r.queue_time, r.id)
               ORDER BY p.queue_time DESC, p.id DESC LIMIT 1
           ) END AS previous_state
    FROM runs r JOIN jobs j ON j.id = r.job_id
    WHERE r.finish_time IS NOT NULL
      AND (r.finish_time, r.id) > (:after_time, CAST(:after_id AS uuid))
      AND r.finish_time <= :until
    ORDER BY r.finish_time, r.id
    LIMIT :limit
    """
)

SKIPPED_SLOTS = Query(
    """
    SELECT s.id, s.job_id::text AS job_id, j.name AS job_name, j.labels, s.slot_time, s.reason, s.record_time
    FROM skipped_slots s JOIN jobs j ON j.id = s.job_id
    WHERE (s.record_time, s.id) > (:after_time, CAST(:after_id AS bigint)) AND s.record_time <= :until
    ORDER BY s.record_time, s.id
    LIMIT :limit
    """
)

# Runs waiting for a worker longer than :min_wait (since queued, or since their retry was due).
WAITING_RUNS = Query(
    """
    SELECT w.*, extract(epoch FROM clock_timestamp() - w.since) AS waited FROM (
        SELECT r.id::text AS id, r.job_id::text AS job_id, j.name AS job_name, j.labels, r.attempt,
               r.queue_time, CASE WHEN r.attempt > 1 AND r.retry_at IS NOT NULL THEN r.retry_at
                                  ELSE r.queue_time END AS since
        FROM runs r JOIN jobs j ON j.id = r.job_id
        WHERE r.state = 'QUEUED' AND r.queue_time < clock_timestamp() - make_interval(secs => :min_wait)
    ) w
    WHERE w.since < clock_timestamp() - make_interval(secs => :min_wait)
    ORDER BY w.since
    LIMIT :limit
    """
)

INSERT_DELIVERIES = Query(
    """
    INSERT INTO notification_deliveries (id, event_id, event_type, channel_id, rule_id, job_id, run_id, event)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:event_ids AS text[]), CAST(:event_types AS text[]),
                         CAST(:channel_ids AS uuid[]), CAST(:rule_ids AS uuid[]), CAST(:job_ids AS uuid[]),
                         CAST(:run_ids AS uuid[]), CAST(:events AS jsonb[]))
    ON CONFLICT (event_id, channel_id) DO NOTHING
    """
)

CLAIM_DUE = Query(
    """
    WITH due AS (
        SELECT d.id FROM notification_deliveries d JOIN notification_channels c ON c.id = d.channel_id
        WHERE d.state = 'PENDING' AND d.next_attempt_at <= clock_timestamp() AND NOT c.disabled
          AND (d.lease_until IS NULL OR d.lease_until < clock_timestamp())
        ORDER BY d.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE notification_deliveries d
    SET attempts = d.attempts + 1, lease_until = clock_timestamp() + make_interval(secs => :lease),
        last_attempt_time = clock_timestamp()
    FROM due, notification_channels c
    WHERE d.id = due.id AND c.id = d.channel_id
    RETURNING d.id::text AS id, d.event_id, d.event_type, d.event, d.attempts, c.url, c.secret, c.format
    """
)

RECORD_RESULTS = Query(
    """
    UPDATE notification_deliveries d
    SET state = u.state, lease_until = NULL, last_error = u.error, last_status_code = u.status_code,
        response_excerpt = u.excerpt,
        next_attempt_at = CASE WHEN u.delay IS NULL THEN d.next_attempt_at
                               ELSE clock_timestamp() + make_interval(secs => u.delay) END,
        deliver_time = CASE WHEN u.state = 'DELIVERED' THEN clock_timestamp() ELSE d.deliver_time END
    FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:states AS text[]),
                CAST(:errors AS text[]), CAST(:status_codes AS int[]), CAST(:excerpts AS text[]),
                CAST(:delays AS float8[])) AS u(id, attempts, state, error, status_code, excerpt, delay)
    WHERE d.id = u.id AND d.attempts = u.attempts AND d.state = 'PENDING'
    """
)

Detect = Callable[[Sequence[Any], Sequence[RuleRecord]], list[NewDelivery]]
Position = tuple[datetime, str]  # a cursor: (time, id) of the last row read
Reader = Callable[[Connection, Position, datetime, frozenset[EventType]], Awaitable[list[tuple[Any, Position]]]]


@dataclass(frozen=True)
class ScanResult:
    """What one pass over a source did. scanned is None when another scheduler held it."""

    scanned: int | None
    created: int
    full: bool = False  # the batch was full: more may be waiting


@dataclass(frozen=True)
class RecordedResult:
    delivery_id: str
    attempts: int
    decision: Decision
    result: AttemptResult


class NotificationRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    # --- channels ---
    async def create_channel(self, values: Mapping[str, Any], now: datetime, audit: AuditContext) -> ChannelRecord:
        row = await self._audited(
            f"""INSERT INTO notification_channels (id, name, url, secret, format, disabled, description,
                    create_time, update_time)
                VALUES (:id, :name, :url, :secret, :format, :disabled, :description, :now, :now)
                RETURNING {CHANNEL_COLUMNS}""",
            CHANNEL_RESOURCE,
            {**values, "id": str(uuid.uuid4()), "now": now},
            audit,
        )
        assert row is not None
        return _channel(row)

    async def get_channel(self, channel_id: str) -> ChannelRecord:
        row = await self._first(
            Query(f"SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = :id"), {"id": channel_id}
        )
        if row is None:
            raise NotFound(f"notification channel {channel_id} not found")
        return _channel(row)

    async def list_channels(self, page: Page | None, limit: int) -> list[ChannelRecord]:
        rows = await self._page("notification_channels", CHANNEL_COLUMNS, [], {}, page, limit, ascending=True)
        return [_channel(row) for row in rows]

    async def update_channel(
        self, channel_id: str, changes: Mapping[str, Any], now: datetime, audit: AuditContext
    ) -> ChannelRecord:
        sets = ", ".join(f"{name} = :{name}" for name in changes if name in CHANNEL_FIELDS)
        row = await self._audited(
            f"""UPDATE notification_channels SET {sets + ", " if sets else ""}update_time = :now
                WHERE id = :id RETURNING {CHANNEL_COLUMNS}""",
            CHANNEL_RESOURCE,
            {**changes, "id": channel_id, "now": now},
            audit,
        )
        if row is None:
            raise NotFound(f"notification channel {channel_id} not found")
        return _channel(row)

    async def delete_channel(self, channel_id: str, audit: AuditContext) -> None:
        await self._delete("notification_channels", CHANNEL_RESOURCE, channel_id, "notification channel", audit)

    # --- rules ---
    async def create_rule(self, values: Mapping[str, Any], now: datetime, audit: AuditContext) -> RuleRecord:
        row = await self._audited(
            f"""INSERT INTO notification_rules (id, name, channel_id, job_id, label_selector, events,
                    stuck_after_seconds, disabled, create_time, update_time)
                VALUES (:id, :name, :channel_id, :job_id, CAST(:label_selector AS jsonb), :events,
                        :stuck_after_seconds, :disabled, :now, :now)
                RETURNING {RULE_COLUMNS}""",
            RULE_RESOURCE,
            _rule_params({**values, "id": str(uuid.uuid4()), "now": now}),
            audit,
            field="rule",
        )
        assert row is not None
        return _rule(row)

    async def get_rule(self, rule_id: str) -> RuleRecord:
        row = await self._first(
            Query(f"SELECT {RULE_COLUMNS} FROM notification_rules WHERE id = :id"), {"id": rule_id}
        )
        if row is None:
            raise NotFound(f"notification rule {rule_id} not found")
        return _rule(row)

    async def list_rules(self, conditions: Sequence[Condition], page: Page | None, limit: int) -> list[RuleRecord]:
        where = [f"{c.field}::text = :c{i}" for i, c in enumerate(conditions)]
        params = {f"c{i}": c.value for i, c in enumerate(conditions)}
        rows = await self._page("notification_rules", RULE_COLUMNS, where, params, page, limit, ascending=True)
        return [_rule(row) for row in rows]

    async def update_rule(
        self, rule_id: str, changes: Mapping[str, Any], now: datetime, audit: AuditContext
    ) -> RuleRecord:
        sets = ", ".join(
            f"{name} = CAST(:{name} AS jsonb)" if name == "label_selector" else f"{name} = :{name}"
            for name in changes
            if name in RULE_FIELDS
        )
        row = await self._audited(
            f"""UPDATE notification_rules SET {sets + ", " if sets else ""}update_time = :now
                WHERE id = :id RETURNING {RULE_COLUMNS}""",
            RULE_RESOURCE,
            _rule_params({**changes, "id": rule_id, "now": now}),
            audit,
            field="rule",
        )
        if row is None:
            raise NotFound(f"notification rule {rule_id} not found")
        return _rule(row)

    async def delete_rule(self, rule_id: str, audit: AuditContext) -> None:
        await self._delete("notification_rules", RULE_RESOURCE, rule_id, "notification rule", audit)

    async def job_ref(self, job_id: str) -> JobRef | None:
        row = await self._first(
            Query("SELECT id::text AS id, name, labels FROM jobs WHERE id = :id"), {"id": job_id}
        )
        return None if row is None else JobRef(row.id, row.name, dict(row.labels))

    # --- deliveries ---
    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> list[str]:
        """Insert deliveries (dropping those an (event, channel) already has); their new ids."""
        async with statement(self._engine) as conn:
            return await insert_deliveries(conn, deliveries)

    async def enqueue_test(self, delivery: NewDelivery, audit: AuditContext) -> str:
        """Insert a channel's test delivery (a test event is new: it always inserts); its id."""
        sql = audited(
            INSERT_DELIVERIES.sql + " RETURNING id::text AS id, channel_id::text AS channel_id",
            "'notificationChannels/' || changed.channel_id",
        )
        async with statement(self._engine) as conn:
            delivery_id = str(
                (await conn.execute(sql, {**_delivery_params([delivery]), **audit.params()})).one_value()
            )
        audit.mark_recorded()
        return delivery_id

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord:
        row = await self._first(
            Query(f"SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = :id"), {"id": delivery_id}
        )
        if row is None:
            raise NotFound(f"notification delivery {delivery_id} not found")
        return _delivery(row)

    async def list_deliveries(
        self, conditions: Sequence[Condition], page: Page | None, limit: int
    ) -> list[DeliveryRecord]:
        where = [
            f"{DELIVERY_FILTERS[c.field]} {'=' if c.op == '=' else '<>'} :c{i}" for i, c in enumerate(conditions)
        ]
        params = {f"c{i}": c.value for i, c in enumerate(conditions)}
        rows = await self._page("notification_deliveries", DELIVERY_COLUMNS, where, params, page, limit)
        return [_delivery(row) for row in rows]

    async def claim_due(self, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(CLAIM_DUE, {"limit": limit, "lease": lease_seconds})).all_rows()
        return [
            ClaimedDelivery(
                id=row.id,
                event_id=row.event_id,
                event_type=EventType(row.event_type),
                event=row.event,
                attempts=row.attempts,
                url=row.url,
                secret=row.secret,
                format=Format(row.format),
            )
            for row in rows
        ]

    async def record(self, results: Sequence[RecordedResult]) -> int:
        """Persist the attempts' decisions; returns how many still held their delivery."""
        if not results:
            return 0
        params = {
            "ids": [r.delivery_id for r in results],
            "attempts": [r.attempts for r in results],
            "states": [r.decision.state.value for r in results],
            "errors": [r.result.error for r in results],
            "status_codes": [r.result.status_code for r in results],
            "excerpts": [r.result.excerpt for r in results],
            "delays": [r.decision.delay_seconds for r in results],
        }
        async with statement(self._engine) as conn:
            return (await conn.execute(RECORD_RESULTS, params)).rowcount

    # --- the event scan ---
    async def move_on_without_rules(self, settle: float) -> bool:
        """With no active rule, move the run and slot cursors on and answer False (nothing to
        scan); True when a rule is active."""
        async with statement(self._engine) as conn:
            params = {"names": list(EVENT_CURSORS), "settle": settle}
            return bool((await conn.execute(MOVE_ON_WITHOUT_RULES, params)).one_value())

    async def scan_finished_runs(self, limit: int, settle: float, detect: Detect) -> ScanResult:
        async def read(
            conn: Connection, after: Position, until: datetime, wanted: frozenset[EventType]
        ) -> list[tuple[Any, Position]]:
            params = {"after_time": after[0], "after_id": after[1] or ZERO_UUID, "until": until, "limit": limit}
            # The previous run's state is looked up (one probe of runs_job_recent) only if asked for.
            want_previous = EventType.JOB_RECOVERED in wanted
            rows = await conn.execute(FINISHED_RUNS, {**params, "want_previous": want_previous})
            return [(_finished(row), (row.finish_time, row.id)) for row in rows]

        return await self._scan(RUNS_CURSOR, RUN_EVENTS, limit, settle, detect, read)

    async def scan_skipped_slots(self, limit: int, settle: float, detect: Detect) -> ScanResult:
        async def read(
            conn: Connection, after: Position, until: datetime, wanted: frozenset[EventType]
        ) -> list[tuple[Any, Position]]:
            params = {"after_time": after[0], "after_id": after[1] or "0", "until": until, "limit": limit}
            return [
                (
                    SkippedSlot(_job(row), row.slot_time, row.reason, row.record_time),
                    (row.record_time, str(row.id)),
                )
                for row in await conn.execute(SKIPPED_SLOTS, params)
            ]

        return await self._scan(SLOTS_CURSOR, SLOT_EVENTS, limit, settle, detect, read)

    async def scan_waiting_runs(self, limit: int, every: float, detect: Detect) -> ScanResult:
        """Runs QUEUED longer than the shortest stuck_after of the RUN_STUCK rules, at most once
        per `every` seconds over all schedulers; nothing is read when no rule asks for them."""
        async with transaction(self._engine) as conn:
            cursor = (await conn.execute(LOCK_CURSOR, {"name": "stuck"})).first_row()
            if cursor is None or (cursor.now - cursor.position_time).total_seconds() < every:
                return ScanResult(None, 0)
            rules = await active_rules(conn)
            thresholds = [r.stuck_after_seconds for r in rules if EventType.RUN_STUCK in r.events]
            rows = (
                (await conn.execute(WAITING_RUNS, {"min_wait": min(thresholds), "limit": limit})).all_rows()
                if thresholds
                else []
            )
            waiting = [
                WaitingRun(row.id, _job(row), row.attempt, row.queue_time, float(row.waited)) for row in rows
            ]
            created = await insert_deliveries(conn, detect(waiting, rules)) if waiting else []
            await conn.execute(MOVE_CURSOR, {"name": "stuck", "time": cursor.now, "id": ""})
        return ScanResult(len(waiting), len(created))

    async def _scan(
        self,
        name: str,
        kinds: frozenset[EventType],
        limit: int,
        settle: float,
        detect: Detect,
        read: Reader,
    ) -> ScanResult:
        async with transaction(self._engine) as conn:
            cursor = (await conn.execute(LOCK_CURSOR, {"name": name})).first_row()
            if cursor is None:
                return ScanResult(None, 0)
            until = cursor.now - timedelta(seconds=settle)
            if until <= cursor.position_time:
                return ScanResult(0, 0)
            rules = await active_rules(conn)
            wanted = frozenset(t for rule in rules for t in rule.events) & kinds
            # With no rule to apply, the cursor just moves on: nobody is told of the past.
            after = (cursor.position_time, cursor.position_id)
            read_items = await read(conn, after, until, wanted) if wanted else []
            items = [item for item, _ in read_items]
            created = await insert_deliveries(conn, detect(items, rules)) if items else []
            full = len(items) >= limit
            moved = read_items[-1][1] if full else (until, "")
            await conn.execute(MOVE_CURSOR, {"name": name, "time": moved[0], "id": moved[1]})
        return ScanResult(len(items), len(created), full)

    # --- helpers ---
    async def _audited(
        self, sql: str, resource: str, params: Mapping[str, Any], audit: AuditContext, field: str = ""
    ) -> Any:
        """The first row of a change with its audit row (none when nothing changed)."""
        row = await self._first(audited(sql, resource), {**params, **audit.params()}, field)
        if row is not None:
            audit.mark_recorded()
        return row

    async def _first(self, query: Query, params: Mapping[str, Any], field: str = "") -> Any:
        try:
            async with statement(self._engine) as conn:
                return (await conn.execute(query, params)).first_row()
        except psycopg.errors.ForeignKeyViolation as error:
            constraint = getattr(error.diag, "constraint_name", "") or ""
            name = "job_id" if "job_id" in constraint else "channel_id"
            raise InvalidArgument(f"{field}.{name}", "names no existing " + name.removesuffix("_id")) from error

    async def _page(
        self,
        table: str,
        columns: str,
        where: list[str],
        params: Mapping[str, Any],
        page: Page | None,
        limit: int,
        ascending: bool = False,
    ) -> list[Any]:
        order = Keyset("create_time", "id", descending=not ascending)
        query, values = page_query(f"SELECT {columns} FROM {table}", where, params, order, page, limit)
        async with statement(self._engine) as conn:
            return (await conn.execute(query, values)).all_rows()

    async def _delete(self, table: str, resource: str, item_id: str, what: str, audit: AuditContext) -> None:
        row = await self._audited(
            f"DELETE FROM {table} WHERE id = :id RETURNING id::text AS id", resource, {"id": item_id}, audit
        )
        if row is None:
            raise NotFound(f"{what} {item_id} not found")


async def active_rules(conn: Connection) -> list[RuleRecord]:
    return [_rule(row) for row in await conn.execute(ACTIVE_RULES)]


async def insert_deliveries(conn: Connection, deliveries: Sequence[NewDelivery]) -> list[str]:
    if not deliveries:
        return []
    sql = Query(INSERT_DELIVERIES.sql + " RETURNING id::text")
    return (await conn.execute(sql, _delivery_params(deliveries))).first_column()


def _delivery_params(deliveries: Sequence[NewDelivery]) -> dict[str, Any]:
    return {
        "ids": [str(uuid.uuid4()) for _ in deliveries],
        "event_ids": [d.event.id for d in deliveries],
        "event_types": [d.event.type.value for d in deliveries],
        "channel_ids": [d.channel_id for d in deliveries],
        "rule_ids": [d.rule_id for d in deliveries],
        "job_ids": [d.event.job.id or None for d in deliveries],
        "run_ids": [d.event.run_id for d in deliveries],
        "events": [json.dumps(d.event.data) for d in deliveries],
    }


def _rule_params(values: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(values)
    if "label_selector" in params:
        params["label_selector"] = json.dumps(params["label_selector"])
    if "events" in params:
        params["events"] = sorted(str(e) for e in params["events"])
    return params


def _job(row: Any) -> JobRef:
    return JobRef(row.job_id, row.job_name, dict(row.labels or {}))


def _finished(row: Any) -> FinishedRun:
    return FinishedRun(
        id=row.id,
        job=_job(row),
        state=row.state,
        attempt=row.attempt,
        trigger=row.trigger,
        queue_time=row.queue_time,
        start_time=row.start_time,
        finish_time=row.finish_time,
        error=row.error,
        previous_state=row.previous_state,
    )


def _channel(row: Any) -> ChannelRecord:
    return ChannelRecord(
        id=row.id,
        name=row.name,
        url=row.url,
        secret=row.secret,
        format=Format(row.format),
        disabled=row.disabled,
        description=row.description,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _rule(row: Any) -> RuleRecord:
    return RuleRecord(
        id=row.id,
        name=row.name,
        channel_id=row.channel_id,
        job_id=row.job_id,
        label_selector=dict(row.label_selector or {}),
        events=frozenset(EventType(e) for e in row.events),
        stuck_after_seconds=float(row.stuck_after_seconds),
        disabled=row.disabled,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        event_id=row.event_id,
        event_type=EventType(row.event_type),
        channel_id=row.channel_id,
        rule_id=row.rule_id,
        job_id=row.job_id,
        run_id=row.run_id,
        event=row.event,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        create_time=row.create_time,
        next_attempt_at=row.next_attempt_at,
        last_attempt_time=row.last_attempt_time,
        deliver_time=row.deliver_time,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        response_excerpt=row.response_excerpt,
    )
