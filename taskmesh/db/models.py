"""Table definitions (SQLAlchemy 2 declarative). Alembic migrations create and evolve them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskmesh.states import ACTIVE_STATES, LEASED_STATES, RunState, in_order

RUN_STATES = tuple(state.value for state in RunState)
ROLES = ("ADMIN", "OPERATOR", "VIEWER", "WORKER")
USER_KINDS = ("USER", "SERVICE")
SKIP_REASONS = ("MISFIRED", "OVERLAP", "OUTSIDE_CATCH_UP_WINDOW")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _states_in(states: frozenset[RunState]) -> str:
    return _in("state", tuple(state.value for state in in_order(states)))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="users_role_valid"),
        CheckConstraint(_in("kind", USER_KINDS), name="users_kind_valid"),
        CheckConstraint(
            "(kind = 'USER' AND password_hash IS NOT NULL) "
            "OR (kind = 'SERVICE' AND password_hash IS NULL AND role IN ('ADMIN', 'OPERATOR', 'VIEWER'))",
            name="users_kind_credentials",
        ),
    )

    username: Mapped[str] = mapped_column(Text, primary_key=True)
    # None for service accounts (they never log in; they use API keys).
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Drawn from credential_version_seq on create and on every role or password change; tokens
    # carry it, so a changed or deleted user's tokens stop working.
    credential_version: Mapped[int] = mapped_column(
        BigInteger, server_default=text("nextval('credential_version_seq')")
    )
    # USER (a person, logs in) or SERVICE (a service account, calls with API keys).
    kind: Mapped[str] = mapped_column(Text, server_default="USER")
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_by: Mapped[str | None] = mapped_column(Text)


class LoginThrottle(Base):
    """Failed logins in the current window, per key ("user:<sha256>" or "addr:<ip>")."""

    __tablename__ = "login_throttle"
    __table_args__ = (Index("login_throttle_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("jobs_create_time_id", "create_time", "id"),
        Index("jobs_fire_due", "due_at", postgresql_where=text("due_at IS NOT NULL AND NOT paused")),
        Index("jobs_labels", "labels", postgresql_using="gin", postgresql_ops={"labels": "jsonb_path_ops"}),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    # taskmesh.v1.Executor in protobuf JSON form.
    executor: Mapped[dict[str, Any]] = mapped_column(JSONB)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # taskmesh.v1.Schedule / RetryPolicy in protobuf JSON; NULL when unset.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempt_timeout_seconds: Mapped[float | None] = mapped_column(Float)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The next nominal slot to fire; schedulers claim due jobs with FOR NO KEY UPDATE SKIP LOCKED.
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_fire_lag_seconds: Mapped[float | None] = mapped_column(Float)
    misfired_slots: Mapped[int] = mapped_column(BigInteger, server_default="0")
    skipped_slots: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # When the next slot is due: next_fire_at plus its jitter (migration 0003).
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by ResumeJob: slots due before it came while the job was paused (they misfired).
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Flow control (migration 0010): 0-9, higher first; ConcurrencyLimit / RateLimit as protobuf JSON.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    concurrency: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    rate_limit: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Default parameters of its runs and the JSON Schema they must satisfy (migration 0008).
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    parameter_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # taskmesh.v1.Retention in protobuf JSON; NULL: the settings (migration 0012).
    retention: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The worker pool whose workers take its runs (migration 0009).
    pool: Mapped[str] = mapped_column(Text, server_default="default")
    # A run not started this long after it was queued fails with NOT_STARTED (migration 0009).
    start_deadline_seconds: Mapped[float | None] = mapped_column(Float)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("state", RUN_STATES), name="runs_state_valid"),
        CheckConstraint("attempt >= 1", name="runs_attempt_positive"),
        Index("runs_job_recent", "job_id", text("queue_time DESC"), text("id DESC")),
        Index("runs_recent", text("queue_time DESC"), text("id DESC")),
        UniqueConstraint("job_id", "slot_time", name="runs_one_per_slot"),
        UniqueConstraint("job_id", "idempotency_key", name="runs_idempotency_key"),
        Index("runs_retry_due", "retry_at", postgresql_where=text(f"state = '{RunState.RETRY_WAIT.value}'")),
        Index("runs_leased", "lease_expires_at", postgresql_where=text(_states_in(LEASED_STATES))),
        Index("runs_active_per_job", "job_id", postgresql_where=text(_states_in(ACTIVE_STATES))),
        # The notification scan's cursor (migration 0011): only a run's finishing version enters it.
        Index("runs_finished", "finish_time", "id", postgresql_where=text("finish_time IS NOT NULL")),
        Index("runs_by_state", "state", text("queue_time DESC"), text("id DESC")),
        Index("runs_retried_from", "retried_from", postgresql_where=text("retried_from IS NOT NULL")),
        Index(
            "runs_start_deadline",
            "start_deadline_at",
            postgresql_where=text("state = 'QUEUED' AND start_deadline_at IS NOT NULL"),
        ),
        # Flow control (migration 0010).
        Index(
            "runs_awaiting_admission",
            text("priority DESC"),
            "queue_time",
            "id",
            postgresql_where=text("awaiting_admission AND state = 'QUEUED'"),
        ),
        Index(
            "runs_concurrency_active",
            "concurrency_key",
            postgresql_where=text(
                f"concurrency_key IS NOT NULL AND NOT awaiting_admission AND {_states_in(ACTIVE_STATES)}"
            ),
        ),
        # Admission at trigger (migration 0018).
        Index(
            "runs_concurrency_waiting",
            "concurrency_key",
            postgresql_where=text("concurrency_key IS NOT NULL AND awaiting_admission AND state = 'QUEUED'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("jobs.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(Text)
    # The current attempt: the fencing token every transition is guarded by.
    attempt: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(Text)
    # Bumped by every transition; orders writes to the status cache.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # Snapshot of the job's executor when the run was created.
    executor: Mapped[dict[str, Any]] = mapped_column(JSONB)
    queue_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finish_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the session token of the stream that claimed the current attempt (its owner).
    worker_session: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # One object per finished attempt: attempt, worker_id, start/finish time, status, result, error.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # Snapshots of the job's policies when the run was created.
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempt_timeout_seconds: Mapped[float | None] = mapped_column(Float)
    slot_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    retried_from: Mapped[uuid.UUID | None] = mapped_column(UUID)
    cancel_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The merged, validated parameters (NULL: none) and the latest attempt's JSON output
    # (NULL: none), written with the outcome by the same statement (migration 0008).
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    output: Mapped[Any | None] = mapped_column(JSONB)
    # The pool the run was queued in, and when it fails NOT_STARTED if still QUEUED (0009).
    pool: Mapped[str] = mapped_column(Text, server_default="default")
    start_deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Flow control (migration 0010, README "Flow control"). A run of a job with a concurrency or
    # rate limit is created awaiting_admission (no outbox row) and admitted by a scheduler's
    # admission pass; its slot is held while it is admitted and active.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    flow: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    awaiting_admission: Mapped[bool] = mapped_column(Boolean, server_default=false())
    keys_rendered: Mapped[bool] = mapped_column(Boolean, server_default=false())
    concurrency_key: Mapped[str | None] = mapped_column(Text)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    on_limit: Mapped[str | None] = mapped_column(Text)
    rate_limit_key: Mapped[str | None] = mapped_column(Text)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_period_seconds: Mapped[float | None] = mapped_column(Float)
    admit_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitGrant(Base):
    """One admission of a rate-limited run: a key's window counts these (migration 0010)."""

    __tablename__ = "rate_limit_grants"
    __table_args__ = (Index("rate_limit_grants_window", "key", "grant_time"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    grant_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)


class SkippedSlot(Base):
    __tablename__ = "skipped_slots"
    __table_args__ = (
        UniqueConstraint("job_id", "slot_time", name="skipped_slots_once"),
        CheckConstraint(_in("reason", SKIP_REASONS), name="skipped_slots_reason"),
        Index("skipped_slots_recent", "job_id", text("slot_time DESC")),
        Index("skipped_slots_by_record_time", "record_time", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("jobs.id", ondelete="CASCADE"))
    slot_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    record_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    active_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID)


class RunLog(Base):
    """Output lines of attempts, capped per attempt (see AttemptLogUsage)."""

    __tablename__ = "run_logs"
    __table_args__ = (Index("run_logs_by_run", "run_id", "attempt", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)


class AttemptLogUsage(Base):
    __tablename__ = "attempt_log_usage"

    run_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    truncated: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Outbox(Base):
    """Work units waiting to be published to RabbitMQ (transactional outbox)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID)
    attempt: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    # Set while a relay publishes the row; past it, another relay may take the row again.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The run's priority: relays publish the highest first (migration 0010).
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    # The run's route (pool, executor kind, Python task; taskmesh.db.outbox.route_of), written
    # with the row: a take reads each route's rows in priority order (migration 0015).
    route: Mapped[str] = mapped_column(Text, server_default="")


class WorkerSession(Base):
    """The live Connect stream of each worker_id, whichever scheduler holds it."""

    __tablename__ = "worker_sessions"

    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    # SHA-256 of the stream's session token (see scheduler.sessions).
    session_key: Mapped[str] = mapped_column(Text)
    # Renewed by the stream's heartbeats; past it, the session is dead (its scheduler vanished).
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the worker serves, from its Hello; busy_slots as of its last heartbeat (0009).
    pools: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{default}")
    executors: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    tasks: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    slots: Mapped[int] = mapped_column(Integer, server_default="0")
    busy_slots: Mapped[int] = mapped_column(Integer, server_default="0")
    connect_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Whether its RabbitMQ consumer takes work (its Hello and heartbeats say; 0017).
    consuming: Mapped[bool] = mapped_column(Boolean, server_default=true())


# --- notifications (issue 13, migration 0011) ---
NOTIFICATION_FORMATS = ("GENERIC", "SLACK")
DELIVERY_STATES = ("PENDING", "DELIVERED", "FAILED")


class NotificationChannel(Base):
    """A webhook. secret is write-only through the API (it reads back as <redacted>)."""

    __tablename__ = "notification_channels"
    __table_args__ = (CheckConstraint(_in("format", NOTIFICATION_FORMATS), name="notification_channels_format"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(Text, server_default="GENERIC")
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    description: Mapped[str] = mapped_column(Text, server_default="")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotificationRule(Base):
    """Events of one job (job_id) or of the jobs whose labels contain label_selector."""

    __tablename__ = "notification_rules"
    __table_args__ = (
        Index("notification_rules_channel", "channel_id"),
        Index("notification_rules_job", "job_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("notification_channels.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID, ForeignKey("jobs.id", ondelete="CASCADE"))
    label_selector: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    stuck_after_seconds: Mapped[float] = mapped_column(Float, server_default="300")
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotificationDelivery(Base):
    """The notification outbox: one row per event and channel (UNIQUE), retried until delivered."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel_id", name="notification_deliveries_once"),
        CheckConstraint(_in("state", DELIVERY_STATES), name="notification_deliveries_state"),
        Index("notification_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'PENDING'")),
        Index("notification_deliveries_recent", text("create_time DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    channel_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("notification_channels.id", ondelete="CASCADE"))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(Text, server_default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliver_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    last_status_code: Mapped[int] = mapped_column(Integer, server_default="0")
    response_excerpt: Mapped[str] = mapped_column(Text, server_default="")


class NotificationCursor(Base):
    """How far the event scan has read a source (runs, skipped_slots), as a keyset position."""

    __tablename__ = "notification_cursors"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    position_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    position_id: Mapped[str] = mapped_column(Text, server_default="")
    # What the worker serves, from its Hello; busy_slots as of its last heartbeat (0009).
    pools: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{default}")
    executors: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    tasks: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    slots: Mapped[int] = mapped_column(Integer, server_default="0")
    busy_slots: Mapped[int] = mapped_column(Integer, server_default="0")
    connect_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Secret(Base):
    """A named secret, sealed (taskmesh.secrets.box): no column holds its value in plaintext."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    key_id: Mapped[str] = mapped_column(Text)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """A service account's API key; only the SHA-256 of the key is kept (taskmesh.auth.api_keys)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("api_keys_service_account", "service_account"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    service_account: Mapped[str] = mapped_column(Text, ForeignKey("users.username", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expire_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Coalesced: written every few seconds by each api_server, not per call.
    last_used_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(Text)
    # From credential_version_seq, like a user's: a new key changes the credential map's stamp.
    credential_version: Mapped[int] = mapped_column(
        BigInteger, server_default=text("nextval('credential_version_seq')")
    )


class AuditEvent(Base):
    """One mutating call (taskmesh.db.audit): written in the transaction of its change."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("audit_events_actor", "actor", "id"),
        Index("audit_events_resource", "resource", "id"),
        Index("audit_events_time", "time", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    actor: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    api_key_id: Mapped[str] = mapped_column(Text, server_default="")
    method: Mapped[str] = mapped_column(Text)
    resource: Mapped[str] = mapped_column(Text, server_default="")
    request_id: Mapped[str] = mapped_column(Text, server_default="")
    outcome: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
