"""The retry policy: a pure decision about a failed attempt (see taskmesh.v1.RetryPolicy)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from taskmesh.records import Json

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_JITTER = 0.1
DEFAULT_ATTEMPT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    multiplier: float = DEFAULT_MULTIPLIER
    max_backoff: float = DEFAULT_MAX_BACKOFF
    jitter: float = DEFAULT_JITTER
    non_retryable_http_statuses: frozenset[int] = field(default_factory=frozenset)
    non_retryable_exit_codes: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_json(cls, data: Json | None) -> RetryPolicy:
        """From taskmesh.v1.RetryPolicy in protobuf JSON; unset fields take the defaults."""
        data = data or {}
        return cls(
            max_attempts=int(data.get("maxAttempts") or DEFAULT_MAX_ATTEMPTS),
            initial_backoff=_seconds(data.get("initialBackoff"), DEFAULT_INITIAL_BACKOFF),
            multiplier=float(data.get("backoffMultiplier") or DEFAULT_MULTIPLIER),
            max_backoff=_seconds(data.get("maxBackoff"), DEFAULT_MAX_BACKOFF),
            jitter=float(data["jitter"]) if "jitter" in data else DEFAULT_JITTER,
            non_retryable_http_statuses=frozenset(int(s) for s in data.get("nonRetryableHttpStatuses", [])),
            non_retryable_exit_codes=frozenset(int(c) for c in data.get("nonRetryableExitCodes", [])),
        )


def _seconds(value: Any, default: float) -> float:
    """A protobuf JSON Duration ("1.5s") in seconds."""
    if not value:
        return default
    return float(str(value).removesuffix("s"))


@dataclass(frozen=True)
class Failure:
    """What the retry policy needs to know about a failed attempt."""

    kind: str  # taskmesh.v1.RunError.Kind name: EXECUTOR_FAILED, TIMEOUT, LOST, UNSUPPORTED
    retryable: bool
    http_status: int | None = None
    exit_code: int | None = None

    @classmethod
    def from_outcome(cls, error: Json | None, result: Json | None) -> Failure:
        error = error or {}
        result = result or {}
        http = result.get("http") or {}
        return cls(
            kind=str(error.get("kind", "EXECUTOR_FAILED")),
            retryable=bool(error.get("retryable", False)),
            http_status=int(http["statusCode"]) if "statusCode" in http else None,
            # protobuf JSON omits zero values: {"shell": {}} means exit code 0
            exit_code=int(result["shell"].get("exitCode", 0)) if "shell" in result else None,
        )


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0  # seconds until the next attempt is queued
    reason: str = ""


def decide_retry(policy: RetryPolicy, attempt: int, failure: Failure, seed: str = "") -> RetryDecision:
    """Retry the failed `attempt` (1-based) or give up. `seed` makes jitter deterministic."""
    if not failure.retryable:
        return RetryDecision(False, reason="the failure is not retryable")
    if failure.http_status is not None and failure.http_status in policy.non_retryable_http_statuses:
        return RetryDecision(False, reason=f"HTTP {failure.http_status} is not retried by the policy")
    if failure.exit_code is not None and failure.exit_code in policy.non_retryable_exit_codes:
        return RetryDecision(False, reason=f"exit code {failure.exit_code} is not retried by the policy")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, reason=f"attempt {attempt} of {policy.max_attempts} failed")
    return RetryDecision(True, delay=backoff(policy, attempt, seed))


def backoff(policy: RetryPolicy, attempt: int, seed: str = "") -> float:
    """Wait after failed `attempt`: initial * multiplier^(attempt-1), capped, then jittered."""
    base = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (attempt - 1))
    if policy.jitter <= 0:
        return base
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64  # [0, 1)
    return max(0.0, base * (1 + policy.jitter * (2 * unit - 1)))
