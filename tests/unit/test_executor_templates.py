"""Templated executors: checked at CreateJob (naming the field), rendered per element on the
worker, the rendered request redacted; the render layer fails the attempt for good."""

import asyncio
from typing import Any

import pytest

from api_server import validation
from taskmesh import executor_templates
from taskmesh.records import AttemptRef
from taskmesh.service_errors import InvalidArgument
from taskmesh.templates import TemplateError
from taskmesh.v1 import job_pb2, run_pb2
from taskmesh.v1 import worker_service_pb2 as pb
from worker.executors.base import NO_OUTPUT, ExecutionContext, ExecutionOutcome, succeeded
from worker.layers import Attempt, bounded_output, render

CONTEXT = ExecutionContext(
    run_id="r-1", attempt=1, job_id="j-1", job_name="reports", params={"customer_id": 42, "name": "a b; rm -rf /"}
)


def http(url: str, **fields: Any) -> job_pb2.Executor:
    return job_pb2.Executor(http=job_pb2.HttpExecutor(url=url, **fields))


def test_syntax_is_checked_when_the_job_is_written_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^job.executor.http.url: unexpected '}'"):
        validation.executor(http("https://api.example.com/{{ params.x }"))
    with pytest.raises(InvalidArgument, match=r"^job.executor.shell.argv\[1\]: "):
        validation.executor(job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=["echo", "{% if %}"])))
    with pytest.raises(InvalidArgument, match=r"^job.executor.http.headers.X-Id: "):
        validation.executor(http("https://api.example.com/", headers={"X-Id": "{{ 1 + }}"}))
    validation.executor(http("https://api.example.com/customers/{{ params.customer_id }}"))


def test_a_job_with_headers_may_not_template_the_host() -> None:
    with pytest.raises(InvalidArgument, match=r"^job.executor.http.url: a job with headers must not template"):
        validation.executor(http("https://{{ params.host }}/x", headers={"Authorization": "Bearer s3cret"}))
    with pytest.raises(InvalidArgument, match=r"^job.executor.http.url: a job with headers"):
        validation.executor(http("https://api.example.com{{ params.path }}", headers={"Authorization": "x"}))
    validation.executor(http("https://{{ params.host }}/x"))  # no secrets to send anywhere
    validation.executor(http("https://api.example.com/{{ params.path }}", headers={"Authorization": "x"}))
    with pytest.raises(InvalidArgument, match="must start with http"):
        validation.executor(http("{{ params.url }}"))


def test_shell_argv_is_rendered_one_element_at_a_time() -> None:
    spec = job_pb2.Executor(
        shell=job_pb2.ShellExecutor(
            argv=["echo", "{{ params.name }}", "id={{ params.customer_id }}"], env={"K": "{{ run.id }}"}
        )
    )
    rendered = executor_templates.render(spec, CONTEXT.template_context())
    assert list(rendered.shell.argv) == ["echo", "a b; rm -rf /", "id=42"]
    assert rendered.shell.env["K"] == "r-1"
    assert list(spec.shell.argv)[1] == "{{ params.name }}"  # the job's own spec is untouched


def test_a_rendered_url_must_stay_an_absolute_http_url() -> None:
    context = ExecutionContext("r", 1, "j", "n", params={"u": "file:///etc/passwd"}).template_context()
    with pytest.raises(
        TemplateError, match=r"^executor.http.url: renders to 'file:///etc/passwd', not an absolute"
    ):
        executor_templates.render(http("{{ params.u }}"), context)
    with pytest.raises(TemplateError, match=r"^executor.http.url: renders to"):
        executor_templates.render(http("http://a.example/{{ params.u }} x"), context)
    with pytest.raises(TemplateError, match=r"^executor.http.headers.X: renders to a line break"):
        executor_templates.render(
            http("https://a.example/", headers={"X": "{{ params.u }}\nInjected: 1"}), context
        )


def test_the_rendered_request_redacts_header_and_env_values() -> None:
    request = executor_templates.rendered_request(
        http("https://a.example/42", headers={"Authorization": "Bearer s3cret"}, body="{}")
    )
    assert request is not None
    assert request.http.url == "https://a.example/42"
    assert dict(request.http.headers) == {"Authorization": "<redacted>"}
    assert "s3cret" not in str(request)
    shell = executor_templates.rendered_request(
        job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=["x"], env={"TOKEN": "s3cret"}))
    )
    assert shell is not None and dict(shell.shell.env) == {"TOKEN": "<redacted>"} and "s3cret" not in str(shell)


def _attempt(spec: job_pb2.Executor) -> Attempt:
    return Attempt(AttemptRef("r-1", 1), pb.Execution(executor=spec), CONTEXT, None)


def test_the_render_layer_hands_the_rendered_spec_on_and_keeps_the_rendered_request() -> None:
    seen: list[job_pb2.Executor] = []

    async def step(attempt: Attempt) -> ExecutionOutcome:
        seen.append(attempt.execution.executor)
        return succeeded(output={"ok": True})

    outcome = asyncio.run(render(_attempt(http("https://a.example/c/{{ params.customer_id }}")), step))
    assert seen[0].http.url == "https://a.example/c/42"
    assert outcome.rendered is not None and outcome.rendered.http.url == "https://a.example/c/42"
    assert outcome.output == {"ok": True}


def test_a_render_error_fails_the_attempt_for_good_naming_the_field() -> None:
    async def step(attempt: Attempt) -> ExecutionOutcome:
        raise AssertionError("the executor must not run")

    outcome = asyncio.run(render(_attempt(http("https://a.example/{{ params.missing }}")), step))
    assert outcome.error is not None
    assert outcome.error.kind == run_pb2.RunError.TEMPLATE
    assert not outcome.error.retryable
    assert outcome.error.message.startswith("executor.http.url: 'dict object' has no attribute 'missing'")


@pytest.mark.parametrize(
    ("output", "problem"),
    [({"a": "x" * 70_000}, "bytes of JSON"), (float("inf"), "no JSON"), ({"a": object()}, "no JSON")],
)
def test_an_output_over_the_limit_fails_the_attempt_for_good(output: Any, problem: str) -> None:
    async def step(attempt: Attempt) -> ExecutionOutcome:
        return succeeded(output=output)

    outcome = asyncio.run(bounded_output(_attempt(job_pb2.Executor(noop=job_pb2.NoopExecutor())), step))
    assert outcome.error is not None and not outcome.error.retryable
    assert problem in outcome.error.message and outcome.output is NO_OUTPUT


def test_an_output_within_the_limit_passes() -> None:
    async def step(attempt: Attempt) -> ExecutionOutcome:
        return succeeded(output=[1, "x" * 60_000])

    outcome = asyncio.run(bounded_output(_attempt(job_pb2.Executor(noop=job_pb2.NoopExecutor())), step))
    assert outcome.error is None and outcome.output[0] == 1
