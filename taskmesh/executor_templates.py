"""Which fields of an executor are templates, checked when a job is written and rendered per
attempt on the worker (taskmesh.templates does the rendering).

Templated: http url, header values, body and idempotency_key; shell argv elements and env values
(each element on its own: the result is one argument, never split or given to a shell). Field
names in errors are those of the request: "executor.http.url", "executor.shell.argv[2]".

The rendered request kept with the attempt (run_pb2.RenderedRequest) shows header and env
values as taskmesh.redaction.REDACTED, as the job itself does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from taskmesh import templates
from taskmesh.redaction import REDACTED
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2, run_pb2

# Rendered sizes: the limits a job's own fields have (api_server.validation).
MAX_URL = 8 * 1024
MAX_HEADER_VALUE = 8 * 1024
MAX_BODY = 1 << 20
MAX_ARG = 128 * 1024
MAX_ENV_VALUE = 32 * 1024
MAX_IDEMPOTENCY_KEY = 256
BODY_EXCERPT = 4096
TEMPLATED_KINDS = frozenset({"http", "shell"})


def template_fields(executor: job_pb2.Executor, prefix: str = "executor") -> Iterator[tuple[str, str]]:
    """(field name, source) of every templated field that holds a template."""
    kind = executor.WhichOneof("kind")
    if kind == "http":
        http = executor.http
        yield from _templated([(f"{prefix}.http.url", http.url), (f"{prefix}.http.body", http.body)])
        yield from _templated((f"{prefix}.http.headers.{name}", v) for name, v in http.headers.items())
        yield from _templated([(f"{prefix}.http.idempotency_key", http.idempotency_key)])
    elif kind == "shell":
        shell = executor.shell
        yield from _templated((f"{prefix}.shell.argv[{i}]", arg) for i, arg in enumerate(shell.argv))
        yield from _templated((f"{prefix}.shell.env.{name}", v) for name, v in shell.env.items())


def _templated(fields: Any) -> Iterator[tuple[str, str]]:
    return ((name, source) for name, source in fields if templates.is_template(source))


def has_templates(executor: job_pb2.Executor) -> bool:
    return next(template_fields(executor), None) is not None


def check(executor: job_pb2.Executor, prefix: str = "job.executor") -> None:
    """InvalidArgument naming the first field whose template does not parse."""
    for field, source in template_fields(executor, prefix):
        try:
            templates.check(source, field)
        except templates.TemplateError as error:
            raise InvalidArgument(error.field, error.problem) from None


def render(executor: job_pb2.Executor, context: Mapping[str, Any]) -> job_pb2.Executor:
    """A copy of the executor with every template rendered; TemplateError naming the field."""
    kind = executor.WhichOneof("kind")
    if kind not in ("http", "shell") or not has_templates(executor):
        return executor
    rendered = job_pb2.Executor()
    rendered.CopyFrom(executor)
    if kind == "http":
        http = rendered.http
        if templates.is_template(http.url):
            http.url = _absolute_url(templates.render(http.url, context, "executor.http.url", MAX_URL))
        http.body = templates.render(http.body, context, "executor.http.body", MAX_BODY)
        for name, value in list(http.headers.items()):
            text = templates.render(value, context, f"executor.http.headers.{name}", MAX_HEADER_VALUE)
            if "\r" in text or "\n" in text:
                raise templates.TemplateError(f"executor.http.headers.{name}", "renders to a line break")
            http.headers[name] = text
        http.idempotency_key = templates.render(
            http.idempotency_key, context, "executor.http.idempotency_key", MAX_IDEMPOTENCY_KEY
        )
    else:
        shell = rendered.shell
        argv = [
            templates.render(a, context, f"executor.shell.argv[{i}]", MAX_ARG) for i, a in enumerate(shell.argv)
        ]
        del shell.argv[:]
        shell.argv.extend(argv)
        for name, value in list(shell.env.items()):
            shell.env[name] = templates.render(value, context, f"executor.shell.env.{name}", MAX_ENV_VALUE)
    return rendered


def _absolute_url(url: str) -> str:
    """A rendered URL must still be an absolute http(s) URL (the egress policy then judges
    every address it connects to, as for any URL)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is no number or out of range)
    except ValueError as error:
        raise templates.TemplateError("executor.http.url", f"renders to an invalid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in "\r\n\x00 "):
        raise templates.TemplateError(
            "executor.http.url", f"renders to {url[:200]!r}, not an absolute http:// or https:// URL"
        )
    return url


def rendered_request(executor: job_pb2.Executor) -> run_pb2.RenderedRequest | None:
    """What an attempt executed, for its history: secrets (header and env values) redacted."""
    kind = executor.WhichOneof("kind")
    if kind == "http":
        http = executor.http
        return run_pb2.RenderedRequest(
            http=run_pb2.RenderedHttp(
                method=http.method.upper() or "GET",
                url=http.url,
                headers={name: REDACTED for name in http.headers},
                body_excerpt=http.body[:BODY_EXCERPT],
            )
        )
    if kind == "shell":
        shell = executor.shell
        return run_pb2.RenderedRequest(
            shell=run_pb2.RenderedShell(argv=list(shell.argv), env={name: REDACTED for name in shell.env})
        )
    return None
