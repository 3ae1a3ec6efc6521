"""Flow control decisions, free of I/O (README "Flow control").

A run of a job with a concurrency or rate limit waits for admission. Its keys are rendered
once (`keys_for`), from the job's limits as they were when the run was created; admission then
lets it go when its concurrency key has fewer admitted, unfinished runs than its limit and its
rate-limit key had fewer than `limit` admissions in the last `window_seconds(period)`.
Waiting reasons start with a code (CONCURRENCY_LIMIT, RATE_LIMITED), then ": " and a detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from taskmesh import flow_keys

DEFAULT_PRIORITY = 5
MIN_PRIORITY, MAX_PRIORITY = 0, 9
MAX_CONCURRENCY_LIMIT = 10_000
MAX_RATE_LIMIT = 100_000
MIN_PERIOD_SECONDS, MAX_PERIOD_SECONDS = 1.0, 86_400.0
# Admission counts a rate window this much longer than the period, so that the starts that
# follow admissions (a few milliseconds later, unevenly) never crowd more than `limit` into
# any window of the period: the price is at most 5% of the rate.
MAX_WINDOW_MARGIN_SECONDS = 0.5
WINDOW_MARGIN_FRACTION = 0.05


class OnLimit(StrEnum):
    """Mirrors taskmesh.v1.ConcurrencyLimit.OnLimit by name."""

    QUEUE = "QUEUE"
    SKIP = "SKIP"
    CANCEL_OLDEST = "CANCEL_OLDEST"


@dataclass(frozen=True)
class FlowKeys:
    """What admission needs of a run: its rendered keys and limits (None: no such limit)."""

    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    on_limit: OnLimit | None = None
    rate_limit_key: str | None = None
    rate_limit: int | None = None
    rate_period_seconds: float | None = None


@dataclass(frozen=True)
class RunContext:
    """The names a key template may use: params, job (id, name), run (id, attempt, slot_time)."""

    run_id: str
    attempt: int
    job_id: str
    job_name: str
    slot_time: str | None = None
    params: Mapping[str, Any] | None = None

    def as_mapping(self) -> dict[str, Any]:
        return {
            "params": dict(self.params or {}),
            "job": {"id": self.job_id, "name": self.job_name},
            "run": {"id": self.run_id, "attempt": self.attempt, "slot_time": self.slot_time},
        }


def default_key(job_id: str) -> str:
    return f"job:{job_id}"


def keys_for(flow: Mapping[str, Any] | None, context: RunContext) -> FlowKeys:
    """Render the run's keys from its flow snapshot ({"concurrency": ConcurrencyLimit JSON,
    "rate_limit": RateLimit JSON}); raises flow_keys.KeyTemplateError naming the field."""
    flow = flow or {}
    keys = FlowKeys()
    concurrency = flow.get("concurrency")
    if concurrency:
        keys = FlowKeys(
            concurrency_key=_render(concurrency, "concurrency.key", context),
            concurrency_limit=int(concurrency["limit"]),
            on_limit=OnLimit(concurrency.get("onLimit") or "QUEUE"),
        )
    rate = flow.get("rate_limit")
    if rate:
        keys = FlowKeys(
            concurrency_key=keys.concurrency_key,
            concurrency_limit=keys.concurrency_limit,
            on_limit=keys.on_limit,
            rate_limit_key=_render(rate, "rate_limit.key", context),
            rate_limit=int(rate["limit"]),
            rate_period_seconds=parse_duration(rate["period"]),
        )
    return keys


def _render(limit: Mapping[str, Any], field: str, context: RunContext) -> str:
    source = str(limit.get("key") or "")
    if not source:
        return default_key(context.job_id)
    return flow_keys.render(source, context.as_mapping(), field)


def parse_duration(text: str) -> float:
    """Protobuf JSON Duration ("10s", "0.5s") -> seconds."""
    if not text.endswith("s"):
        raise ValueError(f"not a protobuf JSON duration: {text!r}")
    return float(text[:-1])


def window_seconds(period_seconds: float) -> float:
    """How far back admission counts a key's grants (see MAX_WINDOW_MARGIN_SECONDS)."""
    return period_seconds + min(MAX_WINDOW_MARGIN_SECONDS, WINDOW_MARGIN_FRACTION * period_seconds)


def concurrency_reason(key: str, active: int, limit: int) -> str:
    return f"CONCURRENCY_LIMIT: key {key} has {active} of {limit} active"


def rate_reason(key: str, used: int, limit: int, period_seconds: float) -> str:
    return f"RATE_LIMITED: key {key} admitted {used} of {limit} runs in the last {period_seconds:g}s"


def dispatch_reason(ahead: int) -> str:
    """An admitted run whose work unit waits in the outbox: its queue holds the in-flight bound
    (README "Flow control", priorities) and the relay publishes as workers take work."""
    return f"DISPATCH_BOUND: waiting in the outbox for room in its queue, behind {ahead} runs of its route"


def pending_reason(has_concurrency: bool) -> str:
    """A run whose keys admission has not rendered yet (it does within a pass)."""
    code = "CONCURRENCY_LIMIT" if has_concurrency else "RATE_LIMITED"
    return f"{code}: waiting for its first admission pass"


# A SKIPPED run's message; PostgreSQL's format() takes it too (runs skipped at trigger).
SKIPPED_FORMAT = "SKIPPED: key %s has %s of %s active (on_limit SKIP)"


def skipped_message(key: str, active: int, limit: int) -> str:
    return SKIPPED_FORMAT % (key, active, limit)


def trigger_keys(flow: Mapping[str, Any] | None, context: RunContext) -> FlowKeys | None:
    """The keys a trigger admits its run by at once (or skips it by, or queues it by with its
    keys rendered): a concurrency limit with on_limit QUEUE or SKIP and no rate limit. None
    leaves the run to the admission pass: rate limits and CANCEL_OLDEST, and a key that cannot
    render (the pass ends the run, saying why)."""
    if not flow or not flow.get("concurrency") or flow.get("rate_limit"):
        return None
    try:
        keys = keys_for(flow, context)
    except (flow_keys.KeyTemplateError, KeyError, ValueError):
        return None
    return keys if keys.on_limit in (OnLimit.QUEUE, OnLimit.SKIP) else None


def cancelled_oldest_message(key: str, run_id: str) -> str:
    return f"CANCELLED: key {key} is full and run {run_id} (on_limit CANCEL_OLDEST) took its slot"


def to_cancel(active_uncancelled: int, cancelling: int, waiting_cancel_oldest: int, limit: int) -> int:
    """How many of a key's oldest active runs CANCEL_OLDEST waiters cancel now: enough that,
    once they and the runs already stopping are gone, every such waiter finds a slot."""
    needed = active_uncancelled + cancelling + waiting_cancel_oldest - limit
    wanted = min(waiting_cancel_oldest, needed) - cancelling
    return max(0, min(wanted, active_uncancelled))
