"""Plain records the repository layer returns: frozen dataclasses, no SQLAlchemy, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskmesh.states import Role, RunState, SkipReason, Trigger

if TYPE_CHECKING:
    from taskmesh.audit import AuditContext
    from taskmesh.flow_policy import FlowKeys

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str | None  # None for a service account
    role: Role
    create_time: datetime
    # Changes on every role or password change (and differs for a recreated user): see
    # taskmesh.auth.credentials.
    credential_version: int
    kind: str = "USER"  # or SERVICE (taskmesh.db.models.USER_KINDS)
    description: str = ""
    created_by: str | None = None


@dataclass(frozen=True)
class ApiKeyRecord:
    """A key as listed (never its secret nor its hash)."""

    key_id: str
    service_account: str
    name: str
    create_time: datetime
    expire_time: datetime
    last_used_time: datetime | None
    created_by: str


@dataclass(frozen=True)
class Credential:
    """What a token is checked against: the user's current role and credential version."""

    username: str
    role: Role
    version: int


@dataclass(frozen=True)
class CredentialStamp:
    """Changes whenever the users table's credentials do (see taskmesh.db.users)."""

    top_version: int
    users: int
    keys: int = 0


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    description: str
    executor: Json  # taskmesh.v1.Executor as protobuf JSON
    labels: dict[str, str]
    create_time: datetime
    update_time: datetime
    schedule: Json | None = None  # taskmesh.v1.Schedule as protobuf JSON; None: manual only
    retry_policy: Json | None = None  # taskmesh.v1.RetryPolicy as protobuf JSON
    attempt_timeout_seconds: float | None = None
    paused: bool = False
    next_fire_at: datetime | None = None  # the next nominal slot the schedule fires
    last_fire_at: datetime | None = None
    last_fire_lag_seconds: float | None = None
    misfired_slots: int = 0
    skipped_slots: int = 0
    pool: str = "default"
    start_deadline_seconds: float | None = None
    priority: int = 5
    concurrency: Json | None = None  # taskmesh.v1.ConcurrencyLimit as protobuf JSON
    rate_limit: Json | None = None  # taskmesh.v1.RateLimit as protobuf JSON
    parameters: Json | None = None  # default parameters of its runs
    parameter_schema: Json | None = None  # a JSON Schema
    retention: Json | None = None  # taskmesh.v1.Retention as protobuf JSON; None: the settings


@dataclass(frozen=True)
class ParameterPolicy:
    """A job's default parameters and parameter schema, as of its update_time (`version`)."""

    version: datetime
    defaults: Json | None
    schema: Json | None
    job_name: str = ""
    # The job's limits as the runs it creates snapshot them ({"concurrency": ..., "rate_limit": ...}).
    flow: Json | None = None


@dataclass(frozen=True)
class Replacement(Generic[T]):
    """A new value for a field that may also be cleared (value None)."""

    value: T


@dataclass(frozen=True)
class ScheduleSetting:
    """A job's new schedule (None removes it) with its first slot and when that slot is due."""

    schedule: Json | None
    next_fire_at: datetime | None
    due_at: datetime | None


@dataclass(frozen=True)
class FlowSettings:
    """A job's flow control (README "Flow control"): priority 0-9 (None: 5), ConcurrencyLimit and
    RateLimit as protobuf JSON (None: no limit)."""

    priority: int | None = None
    concurrency: Json | None = None
    rate_limit: Json | None = None


@dataclass(frozen=True)
class FlowChanges:
    """UpdateJob: new flow-control values; None leaves a field alone."""

    priority: int | None = None
    concurrency: Replacement[Json | None] | None = None
    rate_limit: Replacement[Json | None] | None = None


@dataclass(frozen=True)
class JobChanges:
    """New values for the fields an UpdateJob names; None leaves a field alone."""

    name: str | None = None
    description: str | None = None
    executor: Json | None = None
    labels: dict[str, str] | None = None
    schedule: ScheduleSetting | None = None
    retry_policy: Replacement[Json | None] | None = None
    attempt_timeout_seconds: Replacement[float | None] | None = None
    pool: str | None = None
    start_deadline_seconds: Replacement[float | None] | None = None
    priority: int | None = None
    concurrency: Replacement[Json | None] | None = None
    rate_limit: Replacement[Json | None] | None = None
    parameters: Replacement[Json | None] | None = None
    parameter_schema: Replacement[Json | None] | None = None
    retention: Replacement[Json | None] | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    job_id: str
    job_name: str
    state: RunState
    attempt: int
    trigger: Trigger
    version: int
    queue_time: datetime
    start_time: datetime | None = None
    finish_time: datetime | None = None
    worker_id: str | None = None
    result: Json | None = None
    error: Json | None = None
    attempts: list[Json] = field(default_factory=list)
    slot_time: datetime | None = None  # SCHEDULE runs: the nominal slot
    retry_at: datetime | None = None
    idempotency_key: str | None = None
    retried_from: str | None = None
    cancel_time: datetime | None = None
    executor_kind: str | None = None  # noop, sleep, http, shell, python: what a worker must offer to run it
    pool: str = "default"  # the pool it was queued in
    task: str | None = None  # python runs: the task a worker's registry must have
    priority: int = 5  # 0-9, higher first (flow control)
    concurrency_key: str | None = None  # rendered by admission
    rate_limit_key: str | None = None
    awaiting_admission: bool = False  # QUEUED, not admitted yet: no work unit published
    parameters: Json | None = None  # merged and validated; None: the run has none
    output: Any = None  # the latest attempt's JSON output (None also when it had none)


@dataclass(frozen=True)
class AttemptRef:
    run_id: str
    attempt: int


@dataclass(frozen=True)
class RunRequest:
    """A run to create: its id is chosen by the caller, so answers map back to requests."""

    run_id: str
    job_id: str
    idempotency_key: str | None = None
    parameters: Json | None = None  # merged and validated against the job's schema
    # The same parameters as compact JSON, when the caller made that text already (None: the
    # insert makes it).
    parameters_json: str | None = field(default=None, compare=False)
    # The job's update_time the parameters were merged and validated at: the run is created
    # only while the job is still at it (None: no check).
    job_version: datetime | None = None
    priority: int | None = None  # None: the job's
    # Its concurrency key, rendered at trigger (taskmesh.flow_policy.trigger_keys): the insert
    # admits, queues or skips it at once. None: the admission pass renders and decides.
    flow_keys: FlowKeys | None = None
    # The TriggerJob call asking for it (taskmesh.audit), whose audit row the insert writes.
    audit: AuditContext | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ExpiredAttempt:
    """An attempt the reaper found: its lease expired, or it overran its timeout."""

    ref: AttemptRef
    state: RunState
    worker_id: str
    session: str | None  # the owning stream's session key (None: claimed before sessions existed)
    retry_policy: Json | None
    lease_expired: bool


@dataclass(frozen=True)
class ClaimRequest:
    ref: AttemptRef
    worker_id: str
    session: str  # key of the claiming stream's session: the attempt's owner from now on


@dataclass(frozen=True)
class ClaimedAttempt:
    """A granted claim: the run as it now is, and what to execute for how long at most."""

    run: RunRecord
    executor_json: str  # taskmesh.v1.Executor as protobuf JSON text
    timeout_seconds: float


@dataclass(frozen=True)
class OutcomeReport:
    """A worker's report that an attempt ended; new_state is what the run moves to."""

    ref: AttemptRef
    worker_id: str
    session: str | None  # must be the attempt owner's (see ClaimRequest)
    attempt_status: RunState  # SUCCEEDED, FAILED or CANCELLED: how the attempt itself ended
    new_state: RunState
    result: Json | None
    error: Json | None
    retry_delay: float | None = None  # seconds, when new_state is RETRY_WAIT
    output_json: str | None = None  # the attempt's JSON output as text; None: none
    rendered: Json | None = None  # run_pb2.RenderedRequest as protobuf JSON (redacted)


@dataclass(frozen=True)
class LogEntry:
    """A line of output of an attempt."""

    ref: AttemptRef
    time: datetime
    text: str


@dataclass(frozen=True)
class RunLogs:
    lines: list[LogEntry]
    truncated_attempts: list[int]
    next_after_id: int | None = None  # set when more lines follow this page
    last_line_id: int | None = None  # position of the page's last line


@dataclass(frozen=True)
class Page:
    """A keyset position: the (create or queue time, id) of the last item of the previous page."""

    after_time: datetime
    after_id: str


@dataclass(frozen=True)
class Condition:
    """One term of a list filter: field is 'name', 'state', 'trigger' or 'labels.<key>'."""

    field: str
    op: str  # '=', '!=' or ':' (contains)
    value: str


@dataclass(frozen=True)
class DueJob:
    """A scheduled job claimed for firing, locked until the firing transaction ends."""

    id: str
    schedule: Json
    create_time: datetime
    next_fire_at: datetime
    resumed_at: datetime | None  # set by ResumeJob: slots due before it came while paused
    active_run_ids: tuple[str, ...]  # oldest first; only read for FORBID and REPLACE
    now: datetime  # the database clock when the job was claimed


@dataclass(frozen=True)
class FiredSlot:
    slot_time: datetime
    run_id: str


@dataclass(frozen=True)
class SlotSkip:
    slot_time: datetime
    reason: SkipReason
    active_run_id: str | None = None  # OVERLAP: the run that was still active


@dataclass(frozen=True)
class FireDecision:
    """What firing a due job does: the runs to create, the slots to record as skipped, the runs
    to cancel (REPLACE), and where the schedule goes next."""

    job_id: str
    fired: tuple[FiredSlot, ...]
    skipped: tuple[SlotSkip, ...]
    cancel_run_ids: tuple[str, ...]
    next_slot: datetime | None
    next_due: datetime | None
    misfired: int  # fired slots that were missed (late beyond the threshold, or paused)


@dataclass(frozen=True)
class FiredBatch:
    """What a firing transaction did: runs created and cancelled, and slots the unique
    constraint refused (another run already held them: should never happen)."""

    created: list[RunRecord]
    cancelled: list[RunRecord]
    conflicts: int


@dataclass(frozen=True)
class SkippedSlotRecord:
    job_id: str
    slot_time: datetime
    reason: SkipReason
    record_time: datetime
    active_run_id: str | None


@dataclass(frozen=True)
class WorkerProfile:
    """What a worker serves, from its Hello: taskmesh.names routes only that work to it."""

    pools: tuple[str, ...] = ("default",)
    executors: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    slots: int = 0
    consuming: bool = True  # its RabbitMQ consumer takes work (from its Hello and heartbeats)


@dataclass(frozen=True)
class WorkerRecord:
    """A worker with a live session (worker_sessions), as ListWorkers shows it."""

    worker_id: str
    profile: WorkerProfile
    busy_slots: int
    connect_time: datetime


@dataclass(frozen=True)
class MaintenanceDue:
    """What the scheduler's maintenance loop has to do now (taskmesh.db.runs.MAINTENANCE_DUE)."""

    next_retry: datetime | None  # the earliest retry_at of a run waiting to retry
    expired: bool  # an attempt's lease ran out or it overran its timeout
    late: bool  # a queued run's start deadline passed
    now: datetime  # the database's clock, which retry_at is compared with

    @property
    def seconds_to_retry(self) -> float | None:
        """How long until the earliest retry is due (0 or less: due now); None: no retry waits."""
        return None if self.next_retry is None else (self.next_retry - self.now).total_seconds()
