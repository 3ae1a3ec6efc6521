import pytest

from taskmesh.retry_policy import Failure, RetryPolicy, backoff, decide_retry

RETRYABLE = Failure(kind="EXECUTOR_FAILED", retryable=True)


def test_defaults_from_empty_json() -> None:
    policy = RetryPolicy.from_json(None)
    assert policy == RetryPolicy()
    assert policy.max_attempts == 3 and policy.initial_backoff == 1.0 and policy.multiplier == 2.0


def test_from_protobuf_json() -> None:
    policy = RetryPolicy.from_json(
        {
            "maxAttempts": 5,
            "initialBackoff": "0.5s",
            "backoffMultiplier": 3,
            "maxBackoff": "10s",
            "jitter": 0,
            "nonRetryableHttpStatuses": [409],
            "nonRetryableExitCodes": [2],
        }
    )
    assert policy == RetryPolicy(5, 0.5, 3.0, 10.0, 0.0, frozenset({409}), frozenset({2}))


def test_exponential_backoff_capped_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff=1, multiplier=2, max_backoff=5, jitter=0)
    assert [backoff(policy, a) for a in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_is_bounded_and_deterministic() -> None:
    policy = RetryPolicy(initial_backoff=10, multiplier=1, jitter=0.2)
    delays = {backoff(policy, 1, seed=f"run-{i}") for i in range(200)}
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(delays) > 150  # really spread
    assert backoff(policy, 1, "run-7") == backoff(policy, 1, "run-7")


def test_retries_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert decide_retry(policy, 1, RETRYABLE).retry
    assert decide_retry(policy, 2, RETRYABLE).retry
    final = decide_retry(policy, 3, RETRYABLE)
    assert not final.retry and "attempt 3 of 3" in final.reason


def test_max_attempts_one_disables_retries() -> None:
    assert not decide_retry(RetryPolicy(max_attempts=1), 1, RETRYABLE).retry


@pytest.mark.parametrize(
    "failure",
    [
        Failure(kind="UNSUPPORTED", retryable=False),
        Failure(kind="EXECUTOR_FAILED", retryable=True, http_status=409),
        Failure(kind="EXECUTOR_FAILED", retryable=True, exit_code=2),
    ],
)
def test_non_retryable_failures(failure: Failure) -> None:
    policy = RetryPolicy(
        max_attempts=5, non_retryable_http_statuses=frozenset({409}), non_retryable_exit_codes=frozenset({2})
    )
    assert not decide_retry(policy, 1, failure).retry


def test_lost_and_timeout_are_retried() -> None:
    for kind in ("LOST", "TIMEOUT"):
        assert decide_retry(RetryPolicy(), 1, Failure(kind=kind, retryable=True)).retry


def test_failure_from_outcome_json() -> None:
    failure = Failure.from_outcome(
        {"kind": "EXECUTOR_FAILED", "message": "HTTP 503", "retryable": True}, {"http": {"statusCode": 503}}
    )
    assert failure == Failure("EXECUTOR_FAILED", True, http_status=503)
    assert Failure.from_outcome(None, {"shell": {}}).exit_code == 0
