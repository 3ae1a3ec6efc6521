"""Plain records of notifications (frozen dataclasses; no SQL, no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from taskmesh.notify.retries import DeliveryState

Json = dict[str, Any]


class EventType(StrEnum):
    """Mirrors taskmesh.v1.NotificationEventType."""

    RUN_FAILED = "RUN_FAILED"
    JOB_RECOVERED = "JOB_RECOVERED"
    SLOT_MISFIRED = "SLOT_MISFIRED"
    SLOT_SKIPPED = "SLOT_SKIPPED"
    RUN_STUCK = "RUN_STUCK"
    RUN_FINISHED = "RUN_FINISHED"
    TEST = "TEST"


class Format(StrEnum):
    """Mirrors taskmesh.v1.NotificationChannel.Format."""

    GENERIC = "GENERIC"
    SLACK = "SLACK"


@dataclass(frozen=True)
class ChannelRecord:
    id: str
    name: str
    url: str
    secret: str
    format: Format
    disabled: bool
    description: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class RuleRecord:
    id: str
    name: str
    channel_id: str
    job_id: str | None  # one job; None: the jobs label_selector selects
    label_selector: dict[str, str]
    events: frozenset[EventType]
    stuck_after_seconds: float
    disabled: bool = False
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass(frozen=True)
class JobRef:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishedRun:
    """A run that reached a terminal state, and the state of the job's run before it."""

    id: str
    job: JobRef
    state: str  # SUCCEEDED, FAILED or CANCELLED
    attempt: int
    trigger: str
    queue_time: datetime
    start_time: datetime | None
    finish_time: datetime
    error: Json | None = None
    # The terminal state (SUCCEEDED or FAILED) of the job's latest earlier run; None: none.
    previous_state: str | None = None


@dataclass(frozen=True)
class SkippedSlot:
    job: JobRef
    slot_time: datetime
    reason: str  # taskmesh.states.SkipReason
    record_time: datetime


@dataclass(frozen=True)
class WaitingRun:
    """A run still QUEUED for its current attempt."""

    id: str
    job: JobRef
    attempt: int
    queue_time: datetime
    waited_seconds: float


@dataclass(frozen=True)
class Event:
    id: str  # deterministic: every scheduler derives the same id from the same fact
    type: EventType
    job: JobRef
    run_id: str | None
    time: datetime
    data: Json  # the payload's event object (taskmesh.notify.payloads)
    waited_seconds: float | None = None  # RUN_STUCK: compared with each rule's stuck_after


@dataclass(frozen=True)
class NewDelivery:
    event: Event
    channel_id: str
    rule_id: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    event_id: str
    event_type: EventType
    channel_id: str
    rule_id: str | None
    job_id: str | None
    run_id: str | None
    event: Json
    state: DeliveryState
    attempts: int
    create_time: datetime
    next_attempt_at: datetime | None
    last_attempt_time: datetime | None
    deliver_time: datetime | None
    last_error: str
    last_status_code: int
    response_excerpt: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a loop holds until lease_until, with what posting it needs."""

    id: str
    event_id: str
    event_type: EventType
    event: Json
    attempts: int  # including this one: the fencing token of the record that ends it
    url: str
    secret: str
    format: Format
