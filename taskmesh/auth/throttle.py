"""Login throttling policy, pure: how many failed logins a key (a username, a client address)
may have in a window, and how long it must wait once it has had them.

Each admitted attempt counts as a failure until its password proves right (then it is given
back), so that parallel attempts cannot all pass before the first failure is recorded. Once
a key has `limit` failures in its window, every further attempt must wait: base_delay, then
twice that after each further failure, up to max_delay. A waiting key's attempts are refused
without checking the password (a right password must not get through either), and are not
counted. The window (starting at the key's first attempt) then starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_DOUBLINGS = 30


@dataclass(frozen=True)
class ThrottlePolicy:
    limit: int
    window: timedelta
    base_delay: timedelta
    max_delay: timedelta


@dataclass(frozen=True)
class ThrottleState:
    failures: int
    window_start: datetime
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class Admission:
    state: ThrottleState  # to store
    retry_after: timedelta | None  # None: admitted; else refused, retry after this long


def fresh(now: datetime) -> ThrottleState:
    return ThrottleState(failures=0, window_start=now)


def delay_after(failures: int, policy: ThrottlePolicy) -> timedelta:
    """The wait once a key has `failures` (>= limit) failures."""
    doublings = min(failures - policy.limit, MAX_DOUBLINGS)
    delay: timedelta = policy.base_delay * (2**doublings)
    return min(delay, policy.max_delay)


def admit(state: ThrottleState, now: datetime, policy: ThrottlePolicy) -> Admission:
    blocked = state.blocked_until is not None and now < state.blocked_until
    if blocked:
        assert state.blocked_until is not None
        return Admission(state, state.blocked_until - now)
    if now - state.window_start >= policy.window:
        state = fresh(now)
    failures = state.failures + 1
    blocked_until = now + delay_after(failures, policy) if failures >= policy.limit else None
    return Admission(ThrottleState(failures, state.window_start, blocked_until), None)


def give_back(state: ThrottleState) -> ThrottleState:
    """An admitted attempt succeeded: it no longer counts, nor does the wait it set (it was
    admitted, so no wait was running). Failures of other attempts, from this address or any
    other, still count: the next failure waits again, twice as long."""
    return ThrottleState(max(state.failures - 1, 0), state.window_start, None)
