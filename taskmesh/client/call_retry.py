"""When the client retries a failed call and how long it waits: pure decisions, no I/O."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

import grpc


class CallKind(enum.Enum):
    """How safe a call is to repeat."""

    # Reads: repeating them changes nothing. Retried on UNAVAILABLE and DEADLINE_EXCEEDED.
    READ = "read"
    # Writes: retried on UNAVAILABLE only (the request most likely never reached the server).
    # A retried write whose first attempt did land answers as a repeat would: CreateJob gives
    # AlreadyExists, DeleteJob gives NotFound.
    WRITE = "write"
    # Never retried: a repeat could do the work twice (TriggerJob without an idempotency key).
    UNSAFE = "unsafe"


RETRYABLE_CODES: dict[CallKind, frozenset[grpc.StatusCode]] = {
    CallKind.READ: frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}),
    CallKind.WRITE: frozenset({grpc.StatusCode.UNAVAILABLE}),
    CallKind.UNSAFE: frozenset(),
}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: initial_backoff * multiplier**n, capped at max_backoff, +/- jitter."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0
    # Randomises each wait by up to this fraction either way, so clients do not retry in step.
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


NO_RETRIES = RetryPolicy(max_attempts=1)


def should_retry(kind: CallKind, code: grpc.StatusCode, attempt: int, policy: RetryPolicy) -> bool:
    """Whether attempt number `attempt` (1-based), which failed with `code`, is followed by another."""
    return attempt < policy.max_attempts and code in RETRYABLE_CODES[kind]
