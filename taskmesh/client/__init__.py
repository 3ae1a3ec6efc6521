"""A typed Python client for Taskmesh, over the generated gRPC stubs.

    from taskmesh.client import TaskmeshClient, builders

    with TaskmeshClient("127.0.0.1:8080", username="admin", password="admin") as client:
        job = client.create_job("hello", builders.sleep(1))
        run = client.trigger_job(job.id)
        for event in client.watch_run(run.id):
            print(event)

Results are the protobuf messages of taskmesh.v1 (Job, Run, JobStatus...); failures raise
subclasses of taskmesh.client.errors.ApiError.
"""

from taskmesh.client import builders
from taskmesh.client.call_retry import NO_RETRIES, CallKind, RetryPolicy
from taskmesh.client.client import TaskmeshClient
from taskmesh.client.errors import (
    AlreadyExists,
    ApiError,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "NO_RETRIES",
    "AlreadyExists",
    "ApiError",
    "CallKind",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "ServerError",
    "TaskmeshClient",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "builders",
]
