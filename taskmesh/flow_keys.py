"""Rendering of concurrency and rate-limit keys: a sandboxed template over `params`, `job` and
`run` (Jinja2's SandboxedEnvironment with StrictUndefined, as taskmesh.templates of the
parameters work will offer; this module keeps that signature so that it can call it instead).

A key is plain text: no autoescape, whitespace trimmed, at most MAX_KEY_LENGTH characters, and
never empty. A template that fails (syntax, unknown name) raises KeyTemplateError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MAX_KEY_LENGTH = 256
MAX_TEMPLATE_LENGTH = 1024

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class KeyTemplateError(ValueError):
    """The key template cannot be parsed or rendered; the message says why."""


def check_template(source: str) -> None:
    """Syntax only (CreateJob/UpdateJob); names are checked when a run renders it."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise KeyTemplateError(f"at most {MAX_TEMPLATE_LENGTH} characters")
    try:
        _ENV.parse(source)
    except TemplateError as error:
        raise KeyTemplateError(str(error)) from error


def render(source: str, context: Mapping[str, Any]) -> str:
    """The rendered text of a template over `context` (params, job, run)."""
    try:
        text = _ENV.from_string(source).render(**context).strip()
    except TemplateError as error:
        raise KeyTemplateError(str(error)) from error
    except Exception as error:  # a sandboxed template can still raise (e.g. division by zero)
        raise KeyTemplateError(f"{type(error).__name__}: {error}") from error
    if not text:
        raise KeyTemplateError("the key renders empty")
    if len(text) > MAX_KEY_LENGTH:
        raise KeyTemplateError(f"the key renders to more than {MAX_KEY_LENGTH} characters")
    return text
