"""Taskmesh's own error hierarchy.

Driver errors (psycopg, pika, redis) become these at the boundary; taskmesh.rpc.errors maps them
to gRPC status codes in one table.
"""

from __future__ import annotations


class TaskmeshError(Exception):
    """Base of every error this code raises on purpose."""

    default_message = "taskmesh error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidArgument(TaskmeshError):
    """A request field is missing or malformed; the message names the field."""

    default_message = "invalid argument"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(TaskmeshError):
    default_message = "not found"


class AlreadyExists(TaskmeshError):
    default_message = "already exists"


class FailedPrecondition(TaskmeshError):
    """The request is valid but the resource is not in a state that allows it."""

    default_message = "failed precondition"


class InvalidTransition(FailedPrecondition):
    """A guarded state transition found the run in another state or attempt."""

    default_message = "the run is not in a state that allows this"


class Unauthenticated(TaskmeshError):
    default_message = "missing or invalid credentials"


class PermissionDenied(TaskmeshError):
    default_message = "permission denied"


class ResourceExhausted(TaskmeshError):
    """Too many requests of a kind (failed logins): the caller may retry after retry_after seconds."""

    default_message = "too many requests; try again later"

    def __init__(self, message: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(TaskmeshError):
    """A dependency (database, broker, cache) cannot be reached right now."""

    default_message = "a dependency is unavailable; try again"


class DatabaseUnavailable(Unavailable):
    default_message = "the database is unavailable; try again"


class BrokerUnavailable(Unavailable):
    default_message = "the message broker is unavailable"


class CacheUnavailable(Unavailable):
    default_message = "the status cache is unavailable"
