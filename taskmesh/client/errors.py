"""The errors the client raises: one class per gRPC status code a caller may want to catch.

Every failed call raises an ApiError subclass (never a bare grpc.RpcError), so callers can
write `except NotFound:` and the CLI can print `error.message` as one line.
"""

from __future__ import annotations

import grpc


class ApiError(Exception):
    """A call to the Taskmesh API failed; `code` is the gRPC status, `message` the server's text."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def code_name(self) -> str:
        """The status code's name in lower case with spaces, e.g. "not found"."""
        return self.code.name.lower().replace("_", " ")


class InvalidArgument(ApiError):
    """A request field is missing or malformed. The server's message is "<field>: <problem>"."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        field, sep, problem = message.partition(": ")
        self.field: str | None = field if sep and " " not in field else None
        self.problem: str = problem if self.field is not None else message


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ApiError):
    """The request is valid but the resource's state does not allow it (e.g. cancelling a finished run)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ApiError):
    """Missing, wrong or expired credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ApiError):
    """The caller's role may not call this method."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ApiError):
    """The server (or a dependency behind it) could not be reached, after the client's retries."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ApiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ApiError):
    """The server does not implement this method (a server older than the client)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class ResourceExhausted(ApiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Cancelled(ApiError):
    code = grpc.StatusCode.CANCELLED


class ServerError(ApiError):
    """INTERNAL, UNKNOWN, DATA_LOSS and any other code: a bug or an unexpected failure server-side."""

    code = grpc.StatusCode.INTERNAL


ERROR_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def status_code(error: grpc.RpcError) -> grpc.StatusCode:
    code = error.code() if callable(getattr(error, "code", None)) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def from_rpc_error(error: grpc.RpcError) -> ApiError:
    """The ApiError for a failed gRPC call, carrying the server's message."""
    code = status_code(error)
    details = error.details() if callable(getattr(error, "details", None)) else None
    message = details or code.name.lower().replace("_", " ")
    return ERROR_BY_CODE.get(code, ServerError)(message, code)
