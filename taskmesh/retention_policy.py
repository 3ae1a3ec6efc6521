"""How long finished history is kept: pure decisions, no I/O.

A finished run (SUCCEEDED, FAILED, CANCELLED) may be purged once its finish time is older than
its job's retention for that state, unless one of the keeps below holds; a log line of a
finished run once its time is older than the job's log retention. A job's Retention overrides
the server's settings field by field; None (a zero duration or setting) keeps forever.

Keeps, whatever the policy (taskmesh.db.run_purge writes the same rule in SQL, and the
integration tests check the database against `run_is_purgeable`):
- the job's latest run (by queue time, then id): GetJobStatus and ListJobs' state filter show it;
- a run whose idempotency key is still inside its window (a repeated trigger finds it);
- a run a replay names as retried_from, while the replay exists (no dangling link).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskmesh.records import Json
from taskmesh.states import RunState

MIN_RETENTION = timedelta(hours=1)
MAX_RETENTION = timedelta(days=3650)
# Per-job fields of taskmesh.v1.Retention, by the state (or "logs") they govern.
FIELDS = {RunState.SUCCEEDED: "succeeded", RunState.FAILED: "failed", RunState.CANCELLED: "cancelled"}
LOGS = "logs"
FIELDS_IN_ORDER = ("succeeded", "failed", "cancelled", LOGS)
PURGED_STATES = tuple(FIELDS)


@dataclass(frozen=True)
class Retention:
    """Kept for this long; None keeps forever."""

    succeeded: timedelta | None
    failed: timedelta | None
    cancelled: timedelta | None
    logs: timedelta | None

    def for_field(self, field: str) -> timedelta | None:
        value: timedelta | None = getattr(self, field)
        return value


@dataclass(frozen=True)
class RunFacts:
    """What the rule needs to know about one run."""

    state: RunState
    finish_time: datetime | None
    queue_time: datetime
    is_latest_of_job: bool
    has_live_idempotency_key: bool
    is_replayed: bool  # some existing run names it as retried_from


def days(value: float) -> timedelta | None:
    """A setting in days; 0 keeps forever."""
    return timedelta(days=value) if value > 0 else None


def seconds_or_none(value: timedelta | None) -> float:
    """For SQL: the retention in seconds, 0 for forever."""
    return 0.0 if value is None else value.total_seconds()


def override_error(value: timedelta) -> str | None:
    """Why a per-job duration is refused, or None: 0 (forever) or between 1h and 3650 days."""
    if value == timedelta(0) or MIN_RETENTION <= value <= MAX_RETENTION:
        return None
    return "must be 0s (keep forever) or between 1h and 3650d"


def parse_duration(text: str) -> timedelta:
    """A protobuf JSON Duration ("604800s", "1.5s")."""
    return timedelta(seconds=float(text.removesuffix("s")))


def effective(defaults: Retention, override: Json | None) -> Retention:
    """The job's policy: each field of its Retention (protobuf JSON) where set, else the default."""
    override = override or {}

    def pick(field: str) -> timedelta | None:
        if field not in override:
            return defaults.for_field(field)
        value = parse_duration(str(override[field]))
        return value if value > timedelta(0) else None

    return Retention(pick("succeeded"), pick("failed"), pick("cancelled"), pick(LOGS))


def shortest(defaults: Retention, field: str, overrides: Iterable[timedelta | None]) -> timedelta | None:
    """The shortest retention any job has for `field`: nothing younger needs looking at."""
    candidates = [v for v in (defaults.for_field(field), *overrides) if v is not None]
    return min(candidates) if candidates else None


def scan_before(now: datetime, shortest_retention: timedelta | None) -> datetime | None:
    """Rows queued (lines written) at or after this instant cannot be due; None: none can."""
    return None if shortest_retention is None else now - shortest_retention


def run_is_purgeable(run: RunFacts, policy: Retention, now: datetime) -> bool:
    if run.state not in FIELDS or run.finish_time is None:
        return False
    if run.is_latest_of_job or run.has_live_idempotency_key or run.is_replayed:
        return False
    keep = policy.for_field(FIELDS[run.state])
    return keep is not None and run.finish_time < now - keep


def line_is_purgeable(run_state: RunState, line_time: datetime, policy: Retention, now: datetime) -> bool:
    """A log line of a run that stays (lines of purged runs go with them)."""
    return run_state in FIELDS and policy.logs is not None and line_time < now - policy.logs
