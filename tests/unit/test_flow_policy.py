"""Flow control's pure parts: key rendering, windows, CANCEL_OLDEST arithmetic, reasons, and the
validation of a job's flow-control fields."""

import re

import pytest
from google.protobuf.duration_pb2 import Duration

from api_server import flow_validation
from taskmesh import flow_keys, flow_policy
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2

CONTEXT = flow_policy.RunContext(run_id="r1", attempt=2, job_id="j1", job_name="export", params={"customer": 42})


def test_keys_render_over_params_job_and_run() -> None:
    flow = {
        "concurrency": {"key": "c-{{ params.customer }}-{{ job.name }}", "limit": 3, "onLimit": "SKIP"},
        "rate_limit": {"key": "{{ run.id }}/{{ run.attempt }}", "limit": 20, "period": "10s"},
    }
    keys = flow_policy.keys_for(flow, CONTEXT)
    assert keys == flow_policy.FlowKeys("c-42-export", 3, flow_policy.OnLimit.SKIP, "r1/2", 20, 10.0)


def test_an_empty_key_is_the_job_and_no_flow_is_no_key() -> None:
    keys = flow_policy.keys_for({"concurrency": {"limit": 1}, "rate_limit": None}, CONTEXT)
    assert keys.concurrency_key == "job:j1" and keys.on_limit == flow_policy.OnLimit.QUEUE
    assert keys.rate_limit_key is None
    assert flow_policy.keys_for(None, CONTEXT) == flow_policy.FlowKeys()


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ params.missing }}", "concurrency.key"),
        ("{{ '' }}", "renders empty"),
        ("{{ 'x' * 300 }}", "more than 256"),
        ("{{ ().__class__.__bases__ }}", "concurrency.key"),
    ],
)
def test_keys_that_cannot_render_say_why(template: str, error: str) -> None:
    with pytest.raises(flow_keys.KeyTemplateError, match=error):
        flow_policy.keys_for({"concurrency": {"key": template, "limit": 1}}, CONTEXT)


def test_the_window_has_a_small_margin() -> None:
    assert flow_policy.window_seconds(10.0) == 10.5
    assert flow_policy.window_seconds(2.0) == pytest.approx(2.1)
    assert flow_policy.window_seconds(3600.0) == 3600.5


@pytest.mark.parametrize(
    ("active", "cancelling", "waiting", "limit", "expected"),
    [
        (1, 0, 1, 1, 1),  # full: cancel the oldest
        (0, 0, 1, 1, 0),  # a free slot: nothing to cancel
        (0, 1, 1, 1, 0),  # one already stopping: wait for it
        (2, 0, 1, 3, 0),  # room left
        (3, 0, 2, 3, 2),
        (3, 1, 2, 4, 1),  # one stopping covers one waiter
        (1, 0, 5, 1, 1),  # cannot cancel more than are active
    ],
)
def test_cancel_oldest_cancels_just_enough(
    active: int, cancelling: int, waiting: int, limit: int, expected: int
) -> None:
    assert flow_policy.to_cancel(active, cancelling, waiting, limit) == expected


def test_reasons_start_with_their_code() -> None:
    assert flow_policy.concurrency_reason("k", 2, 2) == "CONCURRENCY_LIMIT: key k has 2 of 2 active"
    assert (
        flow_policy.rate_reason("api", 20, 20, 10.0)
        == "RATE_LIMITED: key api admitted 20 of 20 runs in the last 10s"
    )


def test_validation_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("job.priority")):
        flow_validation.priority(10)
    with pytest.raises(InvalidArgument, match=re.escape("requests[3].priority")):
        flow_validation.priority(-1, "requests[3].priority")
    with pytest.raises(InvalidArgument, match=re.escape("job.concurrency.key")):
        flow_validation.concurrency(job_pb2.ConcurrencyLimit(key="{{ oops", limit=1))
    with pytest.raises(InvalidArgument, match=re.escape("job.concurrency.limit")):
        flow_validation.concurrency(job_pb2.ConcurrencyLimit(limit=0))
    with pytest.raises(InvalidArgument, match=re.escape("job.rate_limit.period")):
        flow_validation.rate_limit(job_pb2.RateLimit(limit=1))
    with pytest.raises(InvalidArgument, match=re.escape("job.rate_limit.period")):
        flow_validation.rate_limit(job_pb2.RateLimit(limit=1, period=Duration(seconds=100_000)))
    with pytest.raises(InvalidArgument, match=re.escape("job.rate_limit.limit")):
        flow_validation.rate_limit(job_pb2.RateLimit(limit=100_001, period=Duration(seconds=1)))


def test_validation_normalises_on_limit() -> None:
    assert flow_validation.concurrency(job_pb2.ConcurrencyLimit(limit=2)) == {"limit": 2, "onLimit": "QUEUE"}
    stored = flow_validation.rate_limit(job_pb2.RateLimit(key="api", limit=5, period=Duration(seconds=10)))
    assert stored == {"key": "api", "limit": 5, "period": "10s"}
    assert flow_policy.parse_duration(stored["period"]) == 10.0
