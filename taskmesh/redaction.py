"""Write-only job secrets: the values of an http executor's headers and a shell executor's env.

The API never shows them (to any role): every value reads back as REDACTED. A job update that
sends REDACTED back for a name the job has keeps the stored value, so a job can be read,
edited and written back, but only while the secret stays with the same destination: the same
URL origin (http) or the same argv (shell). Otherwise the value must be sent again, so that
whoever cannot read a secret cannot send it somewhere else either.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from urllib.parse import urlsplit

from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import job_pb2

REDACTED = "<redacted>"
DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(executor: job_pb2.Executor) -> job_pb2.Executor:
    """The executor with every secret value replaced by REDACTED (in place; returned)."""
    for values in _secrets(executor):
        for name in list(values):  # not while iterating: a map changed under its iterator skips keys
            values[name] = REDACTED
    return executor


def has_placeholders(executor: job_pb2.Executor) -> bool:
    return any(value == REDACTED for values in _secrets(executor) for value in values.values())


def restore(
    new: job_pb2.Executor, stored: job_pb2.Executor | None, field: str = "job.executor"
) -> job_pb2.Executor:
    """`new` with each REDACTED value replaced by the stored one (in place; returned); a
    placeholder with nothing to restore is an InvalidArgument naming the header or variable."""
    kind = new.WhichOneof("kind")
    if kind not in ("http", "shell"):
        return new
    [values] = _secrets(new)
    placeholders = [name for name, value in values.items() if value == REDACTED]
    if not placeholders:
        return new
    kept = _restorable(new, stored) if stored is not None else {}
    where = "headers" if kind == "http" else "env"
    for name in placeholders:
        if name not in kept:
            raise InvalidArgument(
                f"{field}.{kind}.{where}.{name}",
                f"is the redaction placeholder {REDACTED}; send the value (a stored value is kept only "
                + ("while the URL's origin stays the same)" if kind == "http" else "while argv stays the same)"),
            )
        values[name] = kept[name]
    return new


def _restorable(new: job_pb2.Executor, stored: job_pb2.Executor) -> MutableMapping[str, str]:
    kind = new.WhichOneof("kind")
    if stored.WhichOneof("kind") != kind:
        return {}
    if kind == "http" and _origin(new.http.url) == _origin(stored.http.url):
        return stored.http.headers
    if kind == "shell" and list(new.shell.argv) == list(stored.shell.argv):
        return stored.shell.env
    return {}


def _secrets(executor: job_pb2.Executor) -> list[MutableMapping[str, str]]:
    kind = executor.WhichOneof("kind")
    if kind == "http":
        return [executor.http.headers]
    if kind == "shell":
        return [executor.shell.env]
    return []


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: a stored secret stays with it (notification channels too)."""
    return _origin(url)
