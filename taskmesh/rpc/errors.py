"""Domain errors -> gRPC status codes, in one table."""

from __future__ import annotations

import grpc

from taskmesh import service_errors

STATUS_BY_ERROR: list[tuple[type[service_errors.TaskmeshError], grpc.StatusCode]] = [
    (service_errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (service_errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (service_errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (service_errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (service_errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (service_errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (service_errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (service_errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_for(error: service_errors.TaskmeshError) -> grpc.StatusCode:
    for error_type, code in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL
