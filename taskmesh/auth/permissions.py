"""Which roles may call which method. A method missing from the table is refused."""

from __future__ import annotations

from taskmesh.states import Role

READ = frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})
WRITE = frozenset({Role.ADMIN, Role.OPERATOR})
ADMIN = frozenset({Role.ADMIN})
WORKER = frozenset({Role.WORKER, Role.ADMIN})

# Methods anyone may call without a token.
PUBLIC_METHODS = frozenset(
    {
        "/taskmesh.v1.AuthService/Login",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

PERMISSIONS: dict[str, frozenset[Role]] = {
    "/taskmesh.v1.JobService/CreateJob": WRITE,
    "/taskmesh.v1.JobService/GetJob": READ,
    "/taskmesh.v1.JobService/ListJobs": READ,
    "/taskmesh.v1.JobService/UpdateJob": WRITE,
    "/taskmesh.v1.JobService/DeleteJob": WRITE,
    "/taskmesh.v1.JobService/TriggerJob": WRITE,
    "/taskmesh.v1.JobService/BatchTriggerJobs": WRITE,
    "/taskmesh.v1.JobService/GetJobStatus": READ,
    "/taskmesh.v1.JobService/ListRuns": READ,
    "/taskmesh.v1.JobService/ListWorkers": READ,
    "/taskmesh.v1.JobService/GetRun": READ,
    "/taskmesh.v1.JobService/PauseJob": WRITE,
    "/taskmesh.v1.JobService/ResumeJob": WRITE,
    "/taskmesh.v1.JobService/ListSkippedSlots": READ,
    "/taskmesh.v1.JobService/CancelRun": WRITE,
    "/taskmesh.v1.JobService/RetryRun": WRITE,
    "/taskmesh.v1.JobService/WatchRun": READ,
    "/taskmesh.v1.JobService/ListRunLogs": READ,
    "/taskmesh.v1.JobService/PreviewSchedule": READ,
    "/taskmesh.v1.JobService/ListConcurrencyKeys": READ,
    "/taskmesh.v1.AuthService/CreateUser": ADMIN,
    "/taskmesh.v1.AuthService/ListUsers": ADMIN,
    "/taskmesh.v1.AuthService/UpdateUser": ADMIN,
    "/taskmesh.v1.AuthService/DeleteUser": ADMIN,
    "/taskmesh.v1.SecretService/CreateSecret": WRITE,
    "/taskmesh.v1.SecretService/ListSecrets": READ,
    "/taskmesh.v1.SecretService/UpdateSecret": WRITE,
    "/taskmesh.v1.SecretService/DeleteSecret": WRITE,
    "/taskmesh.v1.SecretService/RotateSecrets": ADMIN,
    "/taskmesh.v1.WorkerService/Connect": WORKER,
    # Notifications: operators and admins write channels and rules, as they write jobs (a
    # channel posts only where a job's http executor could, under the same egress policy).
    # Channels are read by those who may write them: a webhook URL is often a credential itself
    # (Slack's and Discord's carry their token in the path). Viewers read rules and deliveries.
    "/taskmesh.v1.NotificationService/CreateNotificationChannel": WRITE,
    "/taskmesh.v1.NotificationService/GetNotificationChannel": WRITE,
    "/taskmesh.v1.NotificationService/ListNotificationChannels": WRITE,
    "/taskmesh.v1.NotificationService/UpdateNotificationChannel": WRITE,
    "/taskmesh.v1.NotificationService/DeleteNotificationChannel": WRITE,
    "/taskmesh.v1.NotificationService/TestNotificationChannel": WRITE,
    "/taskmesh.v1.NotificationService/CreateNotificationRule": WRITE,
    "/taskmesh.v1.NotificationService/GetNotificationRule": READ,
    "/taskmesh.v1.NotificationService/ListNotificationRules": READ,
    "/taskmesh.v1.NotificationService/UpdateNotificationRule": WRITE,
    "/taskmesh.v1.NotificationService/DeleteNotificationRule": WRITE,
    "/taskmesh.v1.NotificationService/ListNotificationDeliveries": READ,
    "/taskmesh.v1.NotificationService/GetNotificationDelivery": READ,
}


def is_public(method: str) -> bool:
    return method in PUBLIC_METHODS


def allowed(method: str, role: Role) -> bool:
    return role in PERMISSIONS.get(method, frozenset())
