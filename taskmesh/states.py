"""Run states and the transitions the lifecycle allows (see README "Run lifecycle").

The enum mirrors taskmesh.v1.Run.State by name. Everything else derives from this module: the
SQL of taskmesh.db.runs (the one module that writes runs), the model's index predicates, and
the database's CHECK on runs.state (written out in the latest migration that changes it, which
a unit test keeps equal to the enum). tests/integration/test_transitions.py applies every
guarded statement to a run in every state and checks the edges taken are exactly
ALLOWED_TRANSITIONS.
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


TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
# Not finished yet: counts against a schedule's overlap policy, can be cancelled or waited on.
ACTIVE_STATES = frozenset(RunState) - TERMINAL_STATES
# An attempt is out on a worker under a lease: heartbeats extend it, the reaper ends it.
LEASED_STATES = frozenset({RunState.RUNNING, RunState.CANCELLING})

ALLOWED_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    # FAILED: not started within the job's start_deadline (NOT_STARTED).
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.FAILED}),
    RunState.RUNNING: frozenset(
        {RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT, RunState.CANCELLING, RunState.CANCELLED}
    ),
    RunState.RETRY_WAIT: frozenset({RunState.QUEUED, RunState.CANCELLED}),
    RunState.CANCELLING: frozenset({RunState.CANCELLED, RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}


def in_order(states: frozenset[RunState]) -> tuple[RunState, ...]:
    """The states in declaration order, so that SQL written from a set is always the same text."""
    return tuple(state for state in RunState if state in states)


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
