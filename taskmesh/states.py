"""Run states and the transitions the lifecycle allows (see README "Run lifecycle").

The enum mirrors taskmesh.v1.Run.State by name. The table below is documentation made
executable: every guarded UPDATE in taskmesh.db.runs moves a run along one of these edges, and
unit tests check the two agree.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRY_WAIT = "RETRY_WAIT"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Holds (or is about to hold) a worker."""
        return self in (RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING)


TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

ALLOWED_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset(
        {RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT, RunState.CANCELLING, RunState.CANCELLED}
    ),
    RunState.RETRY_WAIT: frozenset({RunState.QUEUED, RunState.CANCELLED}),
    RunState.CANCELLING: frozenset({RunState.CANCELLED, RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}


def can_transition(current: RunState, new: RunState) -> bool:
    return new in ALLOWED_TRANSITIONS[current]


class Trigger(StrEnum):
    MANUAL = "MANUAL"
    SCHEDULE = "SCHEDULE"
    RETRY = "RETRY"


class Role(StrEnum):
    ADMIN = "ADMIN"
    OPERATOR = "OPERATOR"
    VIEWER = "VIEWER"
    WORKER = "WORKER"


class MisfirePolicy(StrEnum):
    """Mirrors taskmesh.v1.Schedule.MisfirePolicy (UNSPECIFIED means FIRE_ONCE)."""

    FIRE_ONCE = "FIRE_ONCE"
    SKIP = "SKIP"
    FIRE_ALL = "FIRE_ALL"


class OverlapPolicy(StrEnum):
    """Mirrors taskmesh.v1.Schedule.OverlapPolicy (UNSPECIFIED means ALLOW)."""

    ALLOW = "ALLOW"
    FORBID = "FORBID"
    REPLACE = "REPLACE"


class SkipReason(StrEnum):
    """Mirrors taskmesh.v1.SkippedSlot.Reason: why a schedule slot did not fire."""

    MISFIRED = "MISFIRED"
    OVERLAP = "OVERLAP"
    OUTSIDE_CATCH_UP_WINDOW = "OUTSIDE_CATCH_UP_WINDOW"
