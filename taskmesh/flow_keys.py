"""Rendering of concurrency and rate-limit keys with taskmesh.templates (the sandboxed Jinja2
templates of executors) over `params`, `job` and `run`.

A key is plain text: whitespace trimmed, at most MAX_KEY_LENGTH characters, and never empty.
A template that fails (syntax, unknown name, a bound) raises KeyTemplateError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmesh import templates

MAX_KEY_LENGTH = 256
MAX_TEMPLATE_LENGTH = 1024


class KeyTemplateError(ValueError):
    """The key template cannot be parsed or rendered; the message names the field and says why."""


def check_template(source: str, field: str) -> None:
    """Syntax only (CreateJob/UpdateJob); names are checked when a run renders it."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise KeyTemplateError(f"{field}: at most {MAX_TEMPLATE_LENGTH} characters")
    try:
        templates.check(source, field)
    except templates.TemplateError as error:
        raise KeyTemplateError(str(error)) from error


def render(source: str, context: Mapping[str, Any], field: str) -> str:
    """The rendered key of a template over `context` (params, job, run)."""
    try:
        text = templates.render(source, context, field, max_bytes=4 * MAX_KEY_LENGTH).strip()
    except templates.TemplateError as error:
        raise KeyTemplateError(str(error)) from error
    if not text:
        raise KeyTemplateError(f"{field}: the key renders empty")
    if len(text) > MAX_KEY_LENGTH:
        raise KeyTemplateError(f"{field}: the key renders to more than {MAX_KEY_LENGTH} characters")
    return text
