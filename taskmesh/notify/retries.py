"""When a delivery is tried again: exponential backoff with jitter, a bounded number of attempts.

A pure decision: decide(result, attempts, schedule, draw) -> Decision; the delivery loop
persists it. Attempts count every try made so far, this one included.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeliveryState(StrEnum):
    """Mirrors taskmesh.v1.NotificationDelivery.State."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RetrySchedule:
    initial_seconds: float = 5.0
    multiplier: float = 2.0
    max_seconds: float = 3600.0
    max_attempts: int = 12


@dataclass(frozen=True)
class AttemptResult:
    """What one post came to. retryable: whether trying again may help (an egress refusal or
    a URL that cannot be requested will never work)."""

    ok: bool
    status_code: int = 0
    error: str = ""
    retryable: bool = True
    excerpt: str = ""


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    delay_seconds: float | None = None  # until the next attempt (PENDING only)


def backoff(attempts: int, schedule: RetrySchedule, draw: float) -> float:
    """Seconds before the next try after `attempts` failed ones (>= 1): initial * multiplier^
    (attempts-1), capped at max_seconds, then "equal jitter": half of it fixed, half scaled by
    draw (0 <= draw < 1), so that deliveries failed together do not all return together."""
    base = min(schedule.max_seconds, schedule.initial_seconds * schedule.multiplier ** max(0, attempts - 1))
    return base / 2 + base / 2 * min(max(draw, 0.0), 1.0)


def decide(result: AttemptResult, attempts: int, schedule: RetrySchedule, draw: float) -> Decision:
    if result.ok:
        return Decision(DeliveryState.DELIVERED)
    if not result.retryable or attempts >= schedule.max_attempts:
        return Decision(DeliveryState.FAILED)
    return Decision(DeliveryState.PENDING, backoff(attempts, schedule, draw))


def classify_status(status_code: int) -> AttemptResult:
    """2xx delivers; anything else (3xx included: redirects are not followed) is retried."""
    if 200 <= status_code < 300:
        return AttemptResult(ok=True, status_code=status_code)
    return AttemptResult(ok=False, status_code=status_code, error=f"the receiver answered HTTP {status_code}")
