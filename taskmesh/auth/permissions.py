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
    "/taskmesh.v1.AuthService/CreateServiceAccount": ADMIN,
    "/taskmesh.v1.AuthService/ListServiceAccounts": ADMIN,
    "/taskmesh.v1.AuthService/DeleteServiceAccount": ADMIN,
    "/taskmesh.v1.AuthService/CreateApiKey": ADMIN,
    "/taskmesh.v1.AuthService/ListApiKeys": ADMIN,
    "/taskmesh.v1.AuthService/RevokeApiKey": ADMIN,
    "/taskmesh.v1.AuthService/ListAuditEvents": ADMIN,
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

# Every method of the table is one or the other (tests/unit/test_auth.py): a new method must
# say whether it changes anything. Each call of an AUDITED method leaves an audit row
# (taskmesh.audit), its refusals included; tests/security/test_audit_log.py calls every one.
AUDITED = frozenset(
    {
        "/taskmesh.v1.JobService/CreateJob",
        "/taskmesh.v1.JobService/UpdateJob",
        "/taskmesh.v1.JobService/DeleteJob",
        "/taskmesh.v1.JobService/TriggerJob",
        "/taskmesh.v1.JobService/BatchTriggerJobs",
        "/taskmesh.v1.JobService/PauseJob",
        "/taskmesh.v1.JobService/ResumeJob",
        "/taskmesh.v1.JobService/CancelRun",
        "/taskmesh.v1.JobService/RetryRun",
        "/taskmesh.v1.AuthService/CreateUser",
        "/taskmesh.v1.AuthService/UpdateUser",
        "/taskmesh.v1.AuthService/DeleteUser",
        "/taskmesh.v1.AuthService/CreateServiceAccount",
        "/taskmesh.v1.AuthService/DeleteServiceAccount",
        "/taskmesh.v1.AuthService/CreateApiKey",
        "/taskmesh.v1.AuthService/RevokeApiKey",
        # Notifications: their repository writes no audit row, so the guard records each call
        # (outcome and the resource the request names) in a statement of its own, after it.
        "/taskmesh.v1.NotificationService/CreateNotificationChannel",
        "/taskmesh.v1.NotificationService/UpdateNotificationChannel",
        "/taskmesh.v1.NotificationService/DeleteNotificationChannel",
        "/taskmesh.v1.NotificationService/TestNotificationChannel",
        "/taskmesh.v1.NotificationService/CreateNotificationRule",
        "/taskmesh.v1.NotificationService/UpdateNotificationRule",
        "/taskmesh.v1.NotificationService/DeleteNotificationRule",
        # Secrets: recorded by the guard as notifications are; the request's value never is.
        "/taskmesh.v1.SecretService/CreateSecret",
        "/taskmesh.v1.SecretService/UpdateSecret",
        "/taskmesh.v1.SecretService/DeleteSecret",
        "/taskmesh.v1.SecretService/RotateSecrets",
    }
)
# Not audited: reads, and WorkerService/Connect: a worker's stream changes runs, but on the scheduler's
# behalf (claims, outcomes), which the runs themselves record; it is no one's API call.
READ_ONLY = frozenset(
    {
        "/taskmesh.v1.JobService/GetJob",
        "/taskmesh.v1.JobService/ListJobs",
        "/taskmesh.v1.JobService/GetJobStatus",
        "/taskmesh.v1.JobService/ListRuns",
        "/taskmesh.v1.JobService/GetRun",
        "/taskmesh.v1.JobService/ListSkippedSlots",
        "/taskmesh.v1.JobService/WatchRun",
        "/taskmesh.v1.JobService/ListRunLogs",
        "/taskmesh.v1.JobService/ListWorkers",
        "/taskmesh.v1.JobService/PreviewSchedule",
        "/taskmesh.v1.JobService/ListConcurrencyKeys",
        "/taskmesh.v1.AuthService/ListUsers",
        "/taskmesh.v1.AuthService/ListServiceAccounts",
        "/taskmesh.v1.AuthService/ListApiKeys",
        "/taskmesh.v1.AuthService/ListAuditEvents",
        "/taskmesh.v1.WorkerService/Connect",
        "/taskmesh.v1.NotificationService/GetNotificationChannel",
        "/taskmesh.v1.NotificationService/ListNotificationChannels",
        "/taskmesh.v1.NotificationService/GetNotificationRule",
        "/taskmesh.v1.NotificationService/ListNotificationRules",
        "/taskmesh.v1.NotificationService/ListNotificationDeliveries",
        "/taskmesh.v1.NotificationService/GetNotificationDelivery",
        "/taskmesh.v1.SecretService/ListSecrets",
    }
)


def is_public(method: str) -> bool:
    return method in PUBLIC_METHODS


def allowed(method: str, role: Role) -> bool:
    return role in PERMISSIONS.get(method, frozenset())
