"""What a task raises to steer the retry policy, and what bad parameters raise."""

from __future__ import annotations


class NonRetryable(Exception):
    """Raise it from a task: the attempt fails and the run is not retried, whatever attempts are
    left. Any other exception fails the attempt and follows the job's retry policy."""


class ParameterError(NonRetryable):
    """The run's parameters do not fit the task's parameter model: retrying cannot help.
    `path` names the field (`parameters.customer_id`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.detail = message
