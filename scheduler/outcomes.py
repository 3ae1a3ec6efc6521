"""What a run becomes when an attempt ends: pure decisions the ledger and the reaper persist."""

from __future__ import annotations

from dataclasses import dataclass, replace

from taskmesh.records import AttemptRef, ExpiredAttempt, Json, OutcomeReport
from taskmesh.retry_policy import Failure, RetryPolicy, decide_retry
from taskmesh.states import RunState


@dataclass(frozen=True)
class AttemptEnding:
    """A worker's report that it stopped executing an attempt, and how."""

    ref: AttemptRef
    worker_id: str
    session: str  # key of the reporting stream's session: only the attempt's owner is recorded
    status: RunState  # SUCCEEDED, FAILED or CANCELLED
    result: Json | None
    error: Json | None
    output_json: str | None = None  # the attempt's JSON output as text; None: none
    rendered: Json | None = None  # run_pb2.RenderedRequest as protobuf JSON (redacted)


def resolve(ending: AttemptEnding, retry_policy: Json | None) -> OutcomeReport:
    """SUCCEEDED and CANCELLED stand; a failure is retried or final as the run's policy says.
    The attempt's output and rendered request go with the report, whatever it decides."""
    owner = _Owner(ending.worker_id, ending.session)
    if ending.status != RunState.FAILED:
        report = _report(ending.ref, owner, ending.status, ending.status, ending.result, ending.error)
    else:
        failure = Failure.from_outcome(ending.error, ending.result)
        report = _after_failure(ending.ref, owner, failure, retry_policy, ending.result, ending.error)
    if ending.output_json is None and ending.rendered is None:
        return report
    return replace(report, output_json=ending.output_json, rendered=ending.rendered)


def resolve_expired(expired: ExpiredAttempt) -> OutcomeReport:
    """An attempt nobody reported on in time: its worker vanished (LOST) or it overran (TIMEOUT)."""
    owner = _Owner(expired.worker_id, expired.session)
    if expired.state == RunState.CANCELLING:
        error = {"kind": "LOST", "message": "the worker stopped answering while cancelling", "retryable": False}
        return _report(expired.ref, owner, RunState.CANCELLED, RunState.CANCELLED, None, error)
    if expired.lease_expired:
        message = f"worker {expired.worker_id} stopped heartbeating (lease expired)"
        kind = "LOST"
    else:
        message = "the attempt overran its timeout and its worker did not stop it"
        kind = "TIMEOUT"
    error = {"kind": kind, "message": message, "retryable": True}
    failure = Failure(kind=kind, retryable=True)
    return _after_failure(expired.ref, owner, failure, expired.retry_policy, None, error)


@dataclass(frozen=True)
class _Owner:
    """Whose attempt it is: the guard of the statement that records the report."""

    worker_id: str
    session: str | None


def _after_failure(
    ref: AttemptRef, owner: _Owner, failure: Failure, policy: Json | None, result: Json | None, error: Json | None
) -> OutcomeReport:
    decision = decide_retry(RetryPolicy.from_json(policy), ref.attempt, failure, seed=ref.run_id)
    if decision.retry:
        return _report(ref, owner, RunState.FAILED, RunState.RETRY_WAIT, result, error, decision.delay)
    return _report(ref, owner, RunState.FAILED, RunState.FAILED, result, error)


def _report(
    ref: AttemptRef,
    owner: _Owner,
    attempt_status: RunState,
    new_state: RunState,
    result: Json | None,
    error: Json | None,
    retry_delay: float | None = None,
) -> OutcomeReport:
    return OutcomeReport(
        ref=ref,
        worker_id=owner.worker_id,
        session=owner.session,
        attempt_status=attempt_status,
        new_state=new_state,
        result=result,
        error=error,
        retry_delay=retry_delay,
    )
