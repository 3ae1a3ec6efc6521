"""Errors the CLI reports itself, and its exit codes (documented in README "CLI")."""

from __future__ import annotations

OK = 0
API_ERROR = 1  # the server refused the request (invalid argument, not found, permission, ...)
USAGE = 2  # bad flags, files or configuration; nothing was sent
UNREACHABLE = 3  # the server could not be reached (or kept timing out) after retries
RUN_FAILED = 4  # `runs watch`: the run ended FAILED
RUN_CANCELLED = 5  # `runs watch`: the run ended CANCELLED
INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """Reported as one line on stderr, exiting with `exit_code`."""

    exit_code = API_ERROR

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    exit_code = USAGE
